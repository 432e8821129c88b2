//! Issue 3, health and metrics: component checks against the sandbox's real
//! PostgreSQL and Redis, /metrics, the cache that shields PostgreSQL from
//! /health traffic, and CloudWatch EMF lines.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, poll};
use hostd_api::{HealthReport, HealthStatus};

const CONFIG: &str = "/etc/hostd/hostd.toml";
const PG_UNIT: &str = "postgresql@15-main.service";
const PSQL: &str = "psql -XAtq 'host=/run/postgresql user=postgres dbname=postgres'";

fn report(s: &Sandbox) -> Result<(u16, HealthReport)> {
    let r = http_get(s.health_addr()?, "/health")?;
    let report = serde_json::from_str(&r.body).with_context(|| format!("/health: {}", r.body))?;
    Ok((r.status, report))
}

fn component(r: &HealthReport, name: &str) -> Option<HealthStatus> {
    r.components
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.status)
}

/// Runs `f` with hostd.toml changed by `edit` (a shell snippet on
/// `$CONFIG`), then restores the file and restarts hostd whatever happened.
fn with_config(s: &Sandbox, edit: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    s.root_sh(&format!(
        "CONFIG={CONFIG}; cp -p $CONFIG $CONFIG.good && {{ {edit}; }} && systemctl restart hostd.service"
    ))?;
    let result = wait_for_health(s)
        .and_then(|()| s.wait_reconciled())
        .and_then(|()| f());
    let restored = s.root_sh(&format!(
        "mv {CONFIG}.good {CONFIG} && systemctl restart hostd.service"
    ));
    result?;
    restored?;
    wait_for_health(s)
}

/// hostd answers /health (with any status): its first round has run.
fn wait_for_health(s: &Sandbox) -> Result<()> {
    poll("hostd to answer /health", Duration::from_secs(30), || {
        Ok(report(s).ok().map(|_| ()))
    })
}

pub fn postgres_down_is_503_naming_it_and_recovers(s: &Sandbox) -> Result<()> {
    let (_, before) = report(s)?;
    ensure!(
        component(&before, "postgres") == Some(HealthStatus::Healthy),
        "PostgreSQL must be healthy to start with: {before:?}"
    );
    // A hostd restarted by the previous trial may still be bringing units
    // up, and would start PostgreSQL again under this stop.
    s.wait_reconciled()?;
    s.root_sh(&format!("systemctl stop {PG_UNIT}"))?;
    let result = (|| {
        let (code, down) = poll("/health to name postgres", Duration::from_secs(30), || {
            let (code, r) = report(s)?;
            let named = component(&r, "postgres") == Some(HealthStatus::Unhealthy)
                && component(&r, "unit:postgresql") == Some(HealthStatus::Unhealthy);
            Ok(named.then_some((code, r)))
        })?;
        ensure!(
            code == 503,
            "unhealthy PostgreSQL must answer 503, got {code}"
        );
        let reason = down
            .components
            .iter()
            .find(|c| c.name == "postgres")
            .and_then(|c| c.reason.clone())
            .unwrap_or_default();
        ensure!(
            reason.starts_with("PostgreSQL at /run/postgresql: "),
            "{reason}"
        );
        // The conninfo names user and database: neither may leak.
        ensure!(
            !reason.contains("user=") && !reason.contains("dbname"),
            "{reason}"
        );
        Ok(())
    })();
    s.root_sh(&format!("systemctl start {PG_UNIT}"))?;
    result?;
    poll("/health to recover", Duration::from_secs(30), || {
        let (code, r) = report(s)?;
        let back = component(&r, "postgres") == Some(HealthStatus::Healthy)
            && component(&r, "unit:postgresql") == Some(HealthStatus::Healthy)
            && r.status == before.status;
        Ok(back.then_some(code))
    })
    .and_then(|code| {
        let expect = if before.status == HealthStatus::Unhealthy {
            503
        } else {
            200
        };
        ensure!(
            code == expect,
            "back to {:?} but answered {code}",
            before.status
        );
        Ok(())
    })
}

pub fn metrics_expose_unit_and_component_series(s: &Sandbox) -> Result<()> {
    let r = http_get(s.health_addr()?, "/metrics")?;
    ensure!(r.status == 200, "/metrics answered {}", r.status);
    for line in [
        "hostd_up 1",
        &format!("hostd_unit_up{{service=\"postgresql\",unit=\"{PG_UNIT}\"}} 1"),
        "hostd_unit_up{service=\"redis\",unit=\"redis-server.service\"} 1",
        "hostd_component_health{component=\"postgres\"} 0",
        "hostd_component_health{component=\"redis\"} 0",
        "hostd_service_restarts_total{service=\"redis\"} 0",
    ] {
        ensure!(
            r.body.lines().any(|l| l == line),
            "no `{line}` in /metrics:\n{}",
            r.body
        );
    }
    for prefix in [
        "hostd_health ",
        "hostd_disk_used_ratio{path=\"/\"} ",
        "hostd_memory_used_ratio ",
        "hostd_load1 ",
        "hostd_service_failures_total{service=\"postgresql\"} ",
    ] {
        ensure!(
            r.body.lines().any(|l| l.starts_with(prefix)),
            "no `{prefix}` in /metrics:\n{}",
            r.body
        );
    }
    // The CPU figure needs two samples: it appears by the second round.
    poll("hostd_cpu_usage_ratio", Duration::from_secs(15), || {
        let r = http_get(s.health_addr()?, "/metrics")?;
        Ok(r.body.contains("\nhostd_cpu_usage_ratio ").then_some(()))
    })
}

/// `SELECT 1` statements PostgreSQL logged between two markers, from the
/// server's own log: what hostd really sent, not what it says it sent.
fn count_select_1(s: &Sandbox, start: &str, end: &str) -> Result<usize> {
    let out = s.root_sh(&format!(
        "awk '/statement: SELECT .{start}./{{on=1}} /statement: SELECT .{end}./{{on=0}} \
         on && /statement: SELECT 1$/{{n++}} END{{print n+0}}' /var/log/postgresql/postgresql-15-main.log"
    ))?;
    Ok(out.trim().parse()?)
}

pub fn a_burst_of_health_requests_does_not_query_postgres_more(s: &Sandbox) -> Result<()> {
    s.root_sh(&format!(
        "{PSQL} -c \"ALTER SYSTEM SET log_statement = 'all'\" -c 'SELECT pg_reload_conf()'"
    ))?;
    // An hour between rounds: the interval allows no query in the window;
    // only unit signals may trigger rounds, at most one per second.
    let result = with_config(
        s,
        "sed -i 's/^check_interval = .*/check_interval = \"1h\"/' $CONFIG && grep -q '\"1h\"' $CONFIG",
        || {
            let addr = s.health_addr()?;
            s.root_sh(&format!("{PSQL} -c \"SELECT 'burst-start'\""))?;
            let started = Instant::now();
            let threads: Vec<_> = (0..10)
                .map(|_| {
                    std::thread::spawn(move || -> Result<()> {
                        for _ in 0..50 {
                            http_get(addr, "/health")?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for t in threads {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a request thread panicked"))??;
            }
            let window = started.elapsed();
            // One of our own, so a count of zero proves the counting works.
            s.root_sh(&format!("{PSQL} -c 'SELECT 1' -c \"SELECT 'burst-end'\""))?;
            let counted = count_select_1(s, "burst-start", "burst-end")?;
            ensure!(
                counted >= 1,
                "our own SELECT 1 was not counted: log_statement not on?"
            );
            let queries = counted - 1;
            let allowed = usize::try_from(window.as_secs()).unwrap_or(usize::MAX) + 2;
            ensure!(
                queries <= allowed,
                "500 /health requests in {window:?} made {queries} SELECT 1 (at most {allowed} allowed)"
            );
            eprintln!("500 /health requests in {window:?}: {queries} SELECT 1 reached PostgreSQL");
            Ok(())
        },
    );
    s.root_sh(&format!(
        "{PSQL} -c 'ALTER SYSTEM RESET log_statement' -c 'SELECT pg_reload_conf()'"
    ))?;
    result
}

pub fn emf_lines_appear_when_emf_path_is_configured(s: &Sandbox) -> Result<()> {
    let path = "/var/log/hostd/emf.log";
    s.root_sh(&format!("rm -f {path}"))?;
    let result = with_config(
        s,
        "printf '\\n[metrics]\\nemf_path = \"/var/log/hostd/emf.log\"\\nemf_interval = \"1s\"\\n\\n[metrics.dimensions]\\nInstanceId = \"i-sandbox\"\\n' >> $CONFIG",
        || {
            let text = poll("EMF lines", Duration::from_secs(20), || {
                let t = s.root_sh(&format!("cat {path} 2>/dev/null || true"))?;
                Ok((t.lines().count() >= 2).then_some(t))
            })?;
            let mode = s.root_sh(&format!("stat -c %a {path}"))?;
            ensure!(mode.trim() == "640", "EMF file mode {mode}");
            let docs: Vec<serde_json::Value> = text
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .context("an EMF line is not one JSON document")?;
            let host = &docs[0];
            let directive = &host["_aws"]["CloudWatchMetrics"][0];
            ensure!(host["_aws"]["Timestamp"].is_u64(), "{host}");
            ensure!(directive["Namespace"] == "hostd", "{host}");
            ensure!(
                directive["Dimensions"] == serde_json::json!([["InstanceId"]]),
                "{host}"
            );
            ensure!(host["InstanceId"] == "i-sandbox", "{host}");
            ensure!(host["MemoryUsedPercent"].is_number(), "{host}");
            ensure!(
                docs.iter()
                    .any(|d| d["Unit"] == PG_UNIT && d["UnitUp"] == 1.0),
                "no UnitUp for PostgreSQL in {text}"
            );
            ensure!(
                docs.iter()
                    .any(|d| d["Component"] == "postgres" && d["HealthStatus"] == 0.0),
                "no health for the postgres component in {text}"
            );
            Ok(())
        },
    );
    s.root_sh(&format!("rm -f {path}"))?;
    result
}

/// Opens `count` TCP connections to `addr` from this (the host's) side of
/// the project's bridge and holds them without sending a byte, until
/// killed. Prints `open N` once they are.
const HOLD_CONNECTIONS: &str = "
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = [socket.create_connection((host, port), timeout=10) for _ in range(count)]
print('open', len(held), flush=True)
time.sleep(600)
";

fn hostd_sockets(s: &Sandbox) -> Result<usize> {
    let pid = s.root_sh("systemctl show -P MainPID hostd.service")?;
    let n = s.root_sh(&format!(
        "find /proc/{}/fd -lname 'socket:*' | wc -l",
        pid.trim()
    ))?;
    Ok(n.trim().parse()?)
}

/// 2000 idle connections to :7780 (more than hostd's default file limit
/// would allow) neither stop /health nor hostctl, and hostd closes them
/// by itself once their header timeout passes.
pub fn two_thousand_idle_connections_do_not_starve_health_or_hostd(s: &Sandbox) -> Result<()> {
    // With [secrets] (the backup password): a sync has something to do.
    s.with_backups("idle", &[], "", |_| {
        let addr = s.health_addr()?;
        let mut holder = std::process::Command::new("python3")
            .args(["-c", HOLD_CONNECTIONS])
            .args([
                addr.ip().to_string(),
                addr.port().to_string(),
                "2000".into(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let result = while_held(s, addr, &mut holder);
        let _ = holder.kill();
        let _ = holder.wait();
        result
    })
}

fn while_held(
    s: &Sandbox,
    addr: std::net::SocketAddr,
    holder: &mut std::process::Child,
) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let stdout = holder.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    ensure!(line.trim() == "open 2000", "the holder said `{line}`");
    let health = http_get(addr, "/health")?;
    ensure!(health.status == 200, "/health: {}", health.status);
    let status = s.hostctl(&["status", "--json"])?;
    ensure!(
        status.status.success(),
        "hostctl status: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let sync = s.hostctl(&["secrets", "sync"])?;
    ensure!(
        sync.status.success(),
        "hostctl secrets sync: {}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let p = hostctl_tests::deploy::Project::new(&[s], "")?;
    p.stage("idle1", false)?;
    let (code, summary, stderr) = p.deploy(s, "idle1", &[])?;
    ensure!(code == 0, "deploy: {summary:?} {stderr}");
    // The idle ones are closed by hostd's header timeout, not held.
    poll(
        "hostd to close the idle connections",
        Duration::from_secs(60),
        || Ok((hostd_sockets(s)? < 200).then_some(())),
    )?;
    let health = http_get(addr, "/health")?;
    ensure!(
        health.status == 200,
        "/health afterwards: {}",
        health.status
    );
    Ok(())
}

/// A configured disk path is measured on its own file system, a full tmpfs
/// mounted there included (sysinfo's disk list would have measured the
/// file system beneath it, which the sandbox's thresholds of 98/99% ignore).
pub fn a_full_tmpfs_under_data_degrades_health_naming_it(s: &Sandbox) -> Result<()> {
    s.with_hostd_config(
        "mkdir -p /data/small && mount -t tmpfs -o size=1m tmpfs /data/small && \
         dd if=/dev/zero of=/data/small/fill bs=64k count=16 2>/dev/null",
        // Lands in the `[checks.disk]` table the sandbox's set-up wrote last.
        "paths = [\"/\", \"/data/small\"]",
        "umount /data/small; rmdir /data/small",
        || {
            let reason = poll(
                "/health to name the full tmpfs",
                Duration::from_secs(30),
                || {
                    let report: HealthReport =
                        serde_json::from_str(&http_get(s.health_addr()?, "/health")?.body)?;
                    Ok(report
                        .components
                        .into_iter()
                        .find(|c| c.name == "disk:/data/small" && c.status != HealthStatus::Healthy)
                        .and_then(|c| c.reason))
                },
            )?;
            ensure!(reason.starts_with("/data/small is 100% full"), "{reason}");
            Ok(())
        },
    )
}
