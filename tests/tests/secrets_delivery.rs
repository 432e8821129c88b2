//! Issue 4, delivery: secrets from moto reach the API as systemd
//! credentials, byte-exact and readable only by its user; a missing
//! required parameter keeps the API down naming it; an unreachable SSM
//! leaves services on the stored copy with /health degraded; and no value
//! ever shows in hostd's journal, process arguments, /health, /metrics or
//! `hostctl status`. The shipped config has no [secrets]: each trial adds
//! one and puts the file back.

use std::time::Duration;

use anyhow::{Result, ensure};
use hostctl_tests::{Sandbox, http_get, poll};
use hostd_api::{HealthReport, HealthStatus};

const CONFIG: &str = "/etc/hostd/hostd.toml";
const PREFIX: &str = "/hostd/sandbox/";
const SECRETS: &str = "[secrets]\npath = \"/hostd/sandbox/\"\n";
const API_CREDS: &str = "/run/credentials/api@1.service";

/// Awkward values, each with a unique marker so a leak is found even in
/// part. Built at run time so the markers differ per run.
fn awkward(run: &str) -> Vec<(String, Vec<u8>)> {
    let mut big = format!("canary-4k-{run}-").into_bytes();
    let pattern = b"0123456789abcdef\\$\"'\n";
    while big.len() < 4096 {
        big.push(pattern[big.len() % pattern.len()]);
    }
    let values: [(&str, String); 4] = [
        (
            "delivery_newlines",
            format!("canary-nl-{run}\nline two\n\n"),
        ),
        (
            "delivery_quotes",
            format!("canary-q-{run} \"double\" 'single' `tick`"),
        ),
        (
            "delivery_dollar",
            format!("canary-d-{run} $HOME ${{PATH}} \\n C:\\dir\\ end\\"),
        ),
        (
            "delivery_unicode",
            format!("canary-u-{run} é ü 日本語 ✓ 🔑"),
        ),
    ];
    let mut out: Vec<(String, Vec<u8>)> = values
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.into_bytes()))
        .collect();
    out.push(("delivery_4k".to_owned(), big));
    out
}

pub fn secrets_reach_the_api_byte_exact_root_only_and_never_leak(s: &Sandbox) -> Result<()> {
    let run = format!("{:x}", std::process::id() ^ 0x5eed);
    let planted = awkward(&run);
    let names: Vec<&str> = planted.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(
        planted.iter().any(|(_, v)| v.len() == 4096),
        "no 4 KB value"
    );
    s.ssm_put(PREFIX, &planted)?;
    let result = with_config(s, &format!("printf '{SECRETS}' >> $CONFIG"), || {
        wait_secrets(s, HealthStatus::Healthy)?;
        // The running instance predates the credentials: a restart gives
        // them (and goes through the gate).
        let out = s.hostctl(&["restart", "api"])?;
        ensure!(
            out.status.success(),
            "hostctl restart api: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (name, value) in &planted {
            let got = s.root_sh_output(&format!("cat {API_CREDS}/{name}"))?;
            ensure!(got.status.success(), "{API_CREDS}/{name} is not readable");
            ensure!(
                &got.stdout == value,
                "{name} differs ({} bytes delivered, {} planted)",
                got.stdout.len(),
                value.len()
            );
        }
        let modes = s.root_sh(&format!(
            "stat -c '%U %a %n' {API_CREDS} {API_CREDS}/delivery_*"
        ))?;
        for line in modes.lines() {
            let mut f = line.split_whitespace();
            let (user, mode) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            let others = mode.chars().last().unwrap_or('7');
            ensure!(user == "api" && others == '0', "{line}");
        }
        let ours = s.root_sh(
            "stat -c '%U %a' /run/hostd/credentials /run/hostd/credentials/api; \
             stat -c '%U %a' /run/hostd/credentials/api/* | sort -u",
        )?;
        ensure!(ours.trim() == "root 700\nroot 700\nroot 600", "{ours}");
        let drop_in =
            s.root_sh("cat /etc/systemd/system/api@.service.d/50-hostd-credentials.conf")?;
        for name in &names {
            ensure!(
                drop_in.contains(&format!(
                    "LoadCredential={name}:/run/hostd/credentials/api/"
                )),
                "{name} missing from the drop-in:\n{drop_in}"
            );
        }
        no_leak(s, &planted, &run)
    });
    let names: Vec<&str> = planted.iter().map(|(n, _)| n.as_str()).collect();
    let cleaned = s.ssm_delete(PREFIX, &names);
    result?;
    cleaned
}

pub fn a_missing_required_secret_keeps_the_api_down_naming_it(s: &Sandbox) -> Result<()> {
    const MISSING: &str = "delivery_does_not_exist";
    let edit = format!(
        "printf '{SECRETS}required = [\"postgres_password\", \"{MISSING}\"]\\n' >> $CONFIG; \
         systemctl stop 'api@*' api.socket"
    );
    let result = with_config(s, &edit, || {
        poll(
            "hostd to log the missing name",
            Duration::from_secs(30),
            || {
                let log = s.root_sh("journalctl -u hostd -o cat --since '-2min'")?;
                Ok(log
                    .lines()
                    .any(|l| l.contains("api is not started") && l.contains(MISSING))
                    .then_some(()))
            },
        )?;
        let out = s.hostctl(&["start", "api"])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(!out.status.success(), "hostctl start api succeeded: {text}");
        ensure!(text.contains(MISSING), "the error does not name it: {text}");
        let state = s.unit_property("api@1.service", "ActiveState")?;
        ensure!(state != "active", "api@1 is {state}");
        Ok(())
    });
    // Restored, hostd brings the API back by itself (reconcile).
    let back = poll("api@1 to run again", Duration::from_secs(60), || {
        Ok((s.unit_property("api@1.service", "ActiveState")? == "active").then_some(()))
    });
    result?;
    back
}

pub fn unreachable_ssm_starts_services_from_the_stored_copy_degraded(s: &Sandbox) -> Result<()> {
    let result = with_config(s, &format!("printf '{SECRETS}' >> $CONFIG"), || {
        wait_secrets(s, HealthStatus::Healthy)?;
        // Port 9 in the sandbox's own namespace: nothing listens.
        s.root_sh(&format!(
            "printf 'endpoint_url = \"http://127.0.0.1:9/\"\\n' >> {CONFIG}; \
             systemctl stop 'api@*' api.socket; systemctl restart hostd"
        ))?;
        poll(
            "api@1 to start from the stored copy",
            Duration::from_secs(60),
            || Ok((s.unit_property("api@1.service", "ActiveState")? == "active").then_some(())),
        )?;
        let reason = wait_secrets(s, HealthStatus::Degraded)?;
        ensure!(reason.starts_with("secrets stale since "), "{reason}");
        // Only the secrets are off: the host answers 200, degraded.
        poll(
            "/health to answer 200 degraded",
            Duration::from_secs(30),
            || {
                let r = http_get(s.health_addr()?, "/health")?;
                let report: HealthReport = serde_json::from_str(&r.body)?;
                Ok((r.status == 200 && report.status == HealthStatus::Degraded).then_some(()))
            },
        )?;
        s.root_sh(&format!("test -s {API_CREDS}/postgres_password"))?;
        let status = s.hostctl(&["status"])?;
        let text = String::from_utf8_lossy(&status.stdout);
        ensure!(text.contains("secrets stale since"), "{text}");
        Ok(())
    });
    let cleaned = s.root_sh("rm -rf /var/lib/hostd/secrets");
    result?;
    cleaned.map(|_| ())
}

/// The host side of the AWS stand-in's veth (cli/src/sandbox/net.rs): with
/// it down, SSM is unreachable from every sandbox, like a network outage,
/// and moto keeps its parameters for when it comes back.
const AWS_LINK: &str = "hs-aws";

pub fn set_aws_link(state: &str) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(["link", "set", AWS_LINK, state])
        .output()?;
    ensure!(
        out.status.success(),
        "ip link set {AWS_LINK} {state}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

pub fn an_aws_outage_keeps_services_up_degrades_and_recovers(s: &Sandbox) -> Result<()> {
    let edit = format!("printf '{SECRETS}refresh_interval = \"10s\"\n' >> $CONFIG");
    let result = with_config(s, &edit, || {
        wait_secrets(s, HealthStatus::Healthy)?;
        let api_before = s.unit_property("api@1.service", "InvocationID")?;
        set_aws_link("down")?;
        let outage = (|| {
            // The next refresh fails (after the SDK's retries) and the
            // stored copy stays in force.
            let reason = wait_secrets_within(s, HealthStatus::Degraded, Duration::from_secs(180))?;
            ensure!(reason.starts_with("secrets stale since "), "{reason}");
            ensure!(
                s.unit_property("api@1.service", "InvocationID")? == api_before,
                "the API was restarted by a failed refresh"
            );
            // hostd restarted during the outage still brings services up.
            s.root_sh("systemctl stop 'api@*' api.socket; systemctl restart hostd")?;
            poll(
                "api@1 active during the outage",
                Duration::from_secs(60),
                || Ok((s.unit_property("api@1.service", "ActiveState")? == "active").then_some(())),
            )?;
            s.root_sh(&format!("test -s {API_CREDS}/postgres_password"))?;
            Ok(())
        })();
        set_aws_link("up")?;
        outage?;
        // The stand-in is back: the next refresh succeeds.
        wait_secrets_within(s, HealthStatus::Healthy, Duration::from_secs(120)).map(|_| ())
    });
    // Whatever happened above, the stand-in must be reachable again.
    let relinked = set_aws_link("up");
    let cleaned = s.root_sh("rm -rf /var/lib/hostd/secrets");
    result?;
    relinked?;
    cleaned.map(|_| ())
}

/// No planted value, nor its marker, in any place an operator or another
/// process could read.
fn no_leak(s: &Sandbox, planted: &[(String, Vec<u8>)], run: &str) -> Result<()> {
    let places = s.observable_places()?;
    for (place, text) in &places {
        let found = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
        for (name, value) in planted {
            ensure!(!found(value), "the value of {name} appeared in {place}");
        }
        for (name, value) in planted {
            // The marker alone (`canary-nl-<run>`): catches a value cut short.
            let marker = value.split(|b| *b == b' ' || *b == b'\n').next();
            if let Some(m) = marker.filter(|m| m.ends_with(run.as_bytes())) {
                ensure!(!found(m), "the marker of {name} appeared in {place}");
            }
        }
    }
    Ok(())
}

/// Polls /health until its `secrets` component has `status`; its reason.
fn wait_secrets(s: &Sandbox, status: HealthStatus) -> Result<String> {
    wait_secrets_within(s, status, Duration::from_secs(60))
}

fn wait_secrets_within(s: &Sandbox, status: HealthStatus, deadline: Duration) -> Result<String> {
    poll(
        &format!("/health's secrets component to be {}", status.as_str()),
        deadline,
        || {
            let r = http_get(s.health_addr()?, "/health")?;
            let report: HealthReport = serde_json::from_str(&r.body)?;
            Ok(report
                .components
                .into_iter()
                .find(|c| c.name == "secrets" && c.status == status)
                .map(|c| c.reason.unwrap_or_default()))
        },
    )
}

/// Runs `f` with hostd.toml changed by `edit` (shell on `$CONFIG`), then
/// restores the file and restarts hostd whatever happened.
fn with_config(s: &Sandbox, edit: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    s.root_sh(&format!(
        "CONFIG={CONFIG}; cp -p $CONFIG $CONFIG.good && {{ {edit}; }} && systemctl restart hostd.service"
    ))?;
    let result = f();
    let restored = s.root_sh(&format!(
        "mv {CONFIG}.good {CONFIG} && systemctl restart hostd.service"
    ));
    result?;
    restored?;
    poll("hostd to answer /health", Duration::from_secs(30), || {
        Ok(http_get(s.health_addr()?, "/health").ok().map(|_| ()))
    })
}
