//! Issue 21: hostd ships the journals of what it runs, and its metrics as
//! EMF events, to CloudWatch Logs itself; read back here through the AWS
//! API (boto3 against the stand-in). An app this project did not write
//! (Python's http.server) logs each request: every line arrives, in
//! order, once. A job run by hand arrives. A line carrying a secret value
//! arrives redacted. hostd SIGKILLed while lines are being shipped loses
//! and repeats none. The stand-in cut off for a minute degrades /health
//! and shows the lag in `hostctl status`; the lines arrive once it is back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::cloudwatch::{Relay, Streams};
use hostctl_tests::{Sandbox, http_get, poll};

const PORT: u16 = 8320;
const PREFIX: &str = "/hostd/cwtrial/";
const APP_UNIT: &str = "hostd-app-cwweb@1.service";
const OUTAGE: Duration = Duration::from_secs(60);

pub fn journals_and_metrics_reach_cloudwatch_once_in_order_across_kills_and_outages(
    s: &Sandbox,
) -> Result<()> {
    let run = format!("{:x}", std::process::id() ^ 0xc10d);
    let group = format!("/hostd/trial-{run}");
    let canary = format!("cw-canary-{run}-0e3f9a");
    s.ssm_put(PREFIX, &[("token".to_owned(), canary.clone().into_bytes())])?;
    let relay = Relay::start("10.231.0.2:5000".parse()?)?;
    let extra = format!(
        "[secrets]\npath = \"{PREFIX}\"\n\n\
         [cloudwatch]\nlog_group = \"{group}\"\nendpoint_url = \"http://{}\"\ninterval = \"1s\"\nmax_lag = \"20s\"\n\n\
         [metrics]\nemf_interval = \"2s\"\n\n\
         [jobs.cwjob]\ncommand = \"/bin/echo cwjob-output-{run}\"\nschedule = \"hourly\"\n\n\
         [services.cwweb]\ncommand = \"python3 -m http.server --bind 127.0.0.1 $PORT\"\nport = {PORT}\nhealth_path = \"/\"\nrelease_dir = \"/srv/cwweb\"",
        relay.addr
    );
    let result = s.with_hostd_config(
        "mkdir -p /srv/cwweb/r1 && echo hi > /srv/cwweb/r1/index.html && ln -sfn r1 /srv/cwweb/current && rm -rf /var/lib/hostd/cloudwatch",
        &extra,
        "rm -rf /srv/cwweb /var/lib/hostd/cloudwatch",
        || scenario(s, &relay, &group, &run, &canary),
    );
    relay.set_cut(false);
    let deleted = s.ssm_delete(PREFIX, &["token"]);
    result?;
    deleted
}

fn scenario(s: &Sandbox, relay: &Relay, group: &str, run: &str, canary: &str) -> Result<()> {
    let host = instance_id(s)?;
    let stream = |unit: &str| format!("{host}/{unit}");

    // An app's lines, in order and once.
    let app: SocketAddr = format!("{}:{PORT}", s.address).parse()?;
    for n in 0..200 {
        let r = http_get(app, &format!("/index.html?cw={run}-{n}"))?;
        ensure!(r.status == 200, "request {n}: {}", r.status);
    }
    let app_lines = poll(
        "the app's 200 lines in CloudWatch",
        Duration::from_secs(60),
        || {
            let lines = marked(
                &s.log_events(group)?,
                &stream(APP_UNIT),
                &format!("cw={run}-"),
            );
            Ok((lines.len() >= 200).then_some(lines))
        },
    )?;
    let expected: Vec<String> = (0..200).map(|n| n.to_string()).collect();
    ensure!(
        app_lines == expected,
        "the app's lines, in CloudWatch: {app_lines:?}"
    );

    // A job run by hand, and a line carrying a secret value.
    let out = s.hostctl(&["jobs", "run", "cwjob"])?;
    ensure!(
        out.status.success(),
        "jobs run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.root_sh(&format!(
        "systemd-run --quiet --wait --unit=hostd-cwleak-{run} /bin/echo 'before {canary} after'"
    ))?;
    let job_stream = stream("hostd-job-cwjob.service");
    let leak_stream = stream(&format!("hostd-cwleak-{run}.service"));
    let streams = poll(
        "the job's and the leak's lines",
        Duration::from_secs(60),
        || {
            let all = s.log_events(group)?;
            let job = has(&all, &job_stream, &format!("cwjob-output-{run}"));
            let leak = has(&all, &leak_stream, "before ");
            Ok((job && leak).then_some(all))
        },
    )?;
    let leaked = messages(&streams, &leak_stream);
    ensure!(
        leaked.iter().any(|m| m == "before [REDACTED] after"),
        "the secret's line was not redacted as expected: {leaked:?}"
    );

    // Metrics as EMF events, with the instance id as dimension.
    let metrics = poll("EMF events", Duration::from_secs(60), || {
        let docs: Vec<serde_json::Value> = messages(&s.log_events(group)?, &stream("metrics"))
            .iter()
            .filter_map(|m| serde_json::from_str(m).ok())
            .collect();
        Ok((!docs.is_empty()).then_some(docs))
    })?;
    check_emf(&metrics, &host)?;

    // hostd SIGKILLed while a burst is being shipped.
    s.root_sh(&format!(
        "systemd-run --quiet --unit=hostd-cwburst-{run} /bin/sh -c 'i=0; while [ $i -lt 2000 ]; do echo burst-{run}-$i; i=$((i+1)); [ $((i % 100)) = 0 ] && sleep 0.2; done; true'"
    ))?;
    let burst_stream = stream(&format!("hostd-cwburst-{run}.service"));
    let burst_mark = format!("burst-{run}-");
    let before_kill = poll("the burst being shipped", Duration::from_secs(60), || {
        let n = marked(&s.log_events(group)?, &burst_stream, &burst_mark).len();
        Ok((n > 0).then_some(n))
    })?;
    s.sigkill_hostd()?;
    let burst = poll(
        "the whole burst after the kill",
        Duration::from_secs(90),
        || {
            let lines = marked(&s.log_events(group)?, &burst_stream, &burst_mark);
            Ok((lines.len() >= 2000).then_some(lines))
        },
    )?;
    let expected: Vec<String> = (0..2000).map(|n| n.to_string()).collect();
    if burst != expected {
        let odd: Vec<String> = burst
            .iter()
            .enumerate()
            .filter(|(i, n)| expected.get(*i) != Some(*n))
            .take(5)
            .map(|(i, n)| format!("#{i}={n}"))
            .collect();
        let log = s.root_sh("journalctl -u hostd -n 30 -o cat | grep -iv 'GET /' || true")?;
        anyhow::bail!(
            "after a kill with {before_kill} of 2000 shipped, CloudWatch holds {} lines, not each once in order; first differences {odd:?}; hostd:\n{log}",
            burst.len()
        );
    }
    s.wait_reconciled()?;

    // The stand-in cut off for a minute.
    relay.set_cut(true);
    let cut_at = std::time::Instant::now();
    for n in 0..50 {
        http_get(app, &format!("/index.html?cwcut={run}-{n}"))?;
    }
    let reason = poll(
        "/health degraded by the lag",
        Duration::from_secs(50),
        || {
            let c = cloudwatch_component(s)?;
            Ok((c["status"] == "degraded").then_some(c))
        },
    )?;
    ensure!(
        reason["reason"]
            .as_str()
            .is_some_and(|r| r.contains("behind")),
        "{reason}"
    );
    let (_, hosts) = s.status_json()?;
    let shipping = &hosts[0]["status"]["shipping"];
    ensure!(
        shipping["lag_seconds"].as_u64().is_some_and(|l| l > 20)
            && shipping["problem"].is_string()
            && shipping["log_group"] == group,
        "status --json: {shipping}"
    );
    let human = s.hostctl(&["status"])?;
    let text = String::from_utf8_lossy(&human.stdout);
    ensure!(text.contains(&format!("cloudwatch {group} lag")), "{text}");
    let cut_lines = marked(
        &s.log_events(group)?,
        &stream(APP_UNIT),
        &format!("cwcut={run}-"),
    );
    ensure!(
        cut_lines.is_empty(),
        "lines arrived through a cut relay: {cut_lines:?}"
    );
    if let Some(rest) = OUTAGE.checked_sub(cut_at.elapsed()) {
        std::thread::sleep(rest);
    }
    relay.set_cut(false);
    let after = poll(
        "the lines logged during the outage",
        Duration::from_secs(120),
        || {
            let lines = marked(
                &s.log_events(group)?,
                &stream(APP_UNIT),
                &format!("cwcut={run}-"),
            );
            Ok((lines.len() >= 50).then_some(lines))
        },
    )?;
    let expected: Vec<String> = (0..50).map(|n| n.to_string()).collect();
    ensure!(after == expected, "after the outage: {after:?}");
    poll(
        "the cloudwatch component healthy again",
        Duration::from_secs(60),
        || Ok((cloudwatch_component(s)?["status"] == "healthy").then_some(())),
    )?;

    // Never the secret, in any stream.
    let all = s.log_events(group)?;
    for (name, events) in &all {
        ensure!(
            !events.iter().any(|(_, m)| m.contains(canary)),
            "the secret value reached CloudWatch in {name}"
        );
    }
    Ok(())
}

fn cloudwatch_component(s: &Sandbox) -> Result<serde_json::Value> {
    let body = http_get(s.health_addr()?, "/health")?.body;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    v["components"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "cloudwatch")
        .cloned()
        .context("no cloudwatch component in /health")
}

fn instance_id(s: &Sandbox) -> Result<String> {
    poll("the instance id", Duration::from_secs(60), || {
        let (_, hosts) = s.status_json()?;
        Ok(hosts[0]["status"]["instance"]["instance_id"]
            .as_str()
            .map(str::to_owned))
    })
}

fn messages(all: &Streams, stream: &str) -> Vec<String> {
    all.get(stream)
        .map(|e| e.iter().map(|(_, m)| m.clone()).collect())
        .unwrap_or_default()
}

fn has(all: &Streams, stream: &str, needle: &str) -> bool {
    messages(all, stream).iter().any(|m| m.contains(needle))
}

/// The number following `mark` in each line of `stream` carrying one, in
/// the order CloudWatch holds them (systemd's "Started" line quotes the
/// command, `$i` and all: not a number).
fn marked(all: &Streams, stream: &str, mark: &str) -> Vec<String> {
    messages(all, stream)
        .iter()
        .filter_map(|m| {
            let rest = &m[m.find(mark)? + mark.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            (end > 0).then(|| rest[..end].to_owned())
        })
        .collect()
}

fn check_emf(docs: &[serde_json::Value], host: &str) -> Result<()> {
    let first = docs.first().context("no EMF document")?;
    let directive = &first["_aws"]["CloudWatchMetrics"][0];
    ensure!(first["_aws"]["Timestamp"].is_u64(), "{first}");
    ensure!(directive["Namespace"] == "hostd", "{first}");
    ensure!(
        directive["Dimensions"] == serde_json::json!([["InstanceId"]]),
        "{first}"
    );
    ensure!(first["InstanceId"] == host, "{first}");
    let units: BTreeMap<String, String> = directive["Metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["Name"].as_str()?.to_owned(),
                m["Unit"].as_str()?.to_owned(),
            ))
        })
        .collect();
    ensure!(
        units.get("HealthStatus").map(String::as_str) == Some("None"),
        "{first}"
    );
    ensure!(
        units.get("MemoryUsedPercent").map(String::as_str) == Some("Percent"),
        "{first}"
    );
    ensure!(
        first["HealthStatus"]
            .as_f64()
            .is_some_and(|v| (0.0..=2.0).contains(&v)),
        "{first}"
    );
    ensure!(
        docs.iter()
            .any(|d| d["Unit"] == "redis-server.service" && d["UnitUp"] == 1.0),
        "no UnitUp for redis: {docs:?}"
    );
    Ok(())
}
