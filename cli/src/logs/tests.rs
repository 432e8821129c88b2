use hostd_api::ActiveState;

use super::*;
use crate::config::HostTarget;
use crate::fake_hosts::{FakeHosts, host_status, summary, text, unit};

/// redis, and api as `api_unit` (none: an older hostd) with two instances.
fn status(api_unit: &str) -> HostStatus {
    let active = |service: &str, name: &str| unit(service, name, None, ActiveState::Active);
    host_status(
        vec![
            active("redis", "redis-server.service"),
            active("api", "api@1.service"),
            active("api", "api@2.service"),
        ],
        vec![
            summary("redis", "redis-server.service", None, None),
            summary("api", api_unit, None, None),
        ],
    )
}

/// The api's last 5 lines on `hosts`.
fn settings(hosts: &[HostTarget], since: Option<&str>) -> LogsSettings {
    LogsSettings {
        targets: Targets {
            environment: "x".into(),
            hosts: hosts.to_vec(),
        },
        service: "api".into(),
        follow: false,
        lines: 5,
        since: since.map(str::to_owned),
    }
}

/// Prints each argument it got on its own line, after the host's name;
/// fails on host `broken`.
const FAKE_JOURNALCTL: &str = r#"#!/bin/sh
[ "$HOST" = broken ] && { echo "journalctl: no such unit" >&2; exit 1; }
for a in "$@"; do printf '%s: [%s]\n' "$HOST" "$a"; done
"#;

/// `hosts` knowing `status`, with journalctl, and a file in the remote
/// home directory that an unquoted unit glob would match.
fn fake(test: &str, hosts: &[&str]) -> Result<FakeHosts, Box<dyn std::error::Error>> {
    let answers: Vec<(&str, &str)> = hosts.iter().map(|h| (*h, "")).collect();
    let body = serde_json::to_string(&status("api@.service"))?;
    let fake =
        FakeHosts::new(test, &answers, &body)?.with_program("journalctl", FAKE_JOURNALCTL)?;
    std::fs::write(fake.home().join("api@x.service"), "")?;
    Ok(fake)
}

#[test]
fn a_template_unit_reads_every_instance_past_and_present() {
    assert_eq!(
        unit_patterns(&status("api@.service"), "api"),
        ["api@*.service"]
    );
    assert_eq!(
        unit_patterns(&status("api@.service"), "redis"),
        ["redis-server.service"]
    );
    // hostd without the unit in its summaries: the instances it lists.
    assert_eq!(
        unit_patterns(&status(""), "api"),
        ["api@1.service", "api@2.service"]
    );
    let mut old = status("");
    old.services.clear();
    assert_eq!(unit_patterns(&old, "redis"), ["redis-server.service"]);
    assert!(unit_patterns(&old, "nosuch").is_empty());
}

#[test]
fn journalctl_arguments() {
    let mut s = settings(&[], Some("2 hours ago"));
    s.follow = true;
    let argv = journalctl_argv(&s, &["api@*.service".into(), "x.service".into()]);
    assert_eq!(
        argv.join(" "),
        "journalctl --no-pager -o short-iso -n 5 --since 2 hours ago --follow \
         -u api@*.service -u x.service"
    );
    let plain = journalctl_argv(&settings(&[], None), &["r.service".into()]);
    assert_eq!(
        plain.join(" "),
        "journalctl --no-pager -o short-iso -n 5 -u r.service"
    );
}

#[test]
fn several_hosts_get_aligned_prefixes_one_gets_none() {
    let p: Vec<String> = render::prefixes(&["a".into(), "long".into()])
        .iter()
        .map(|p| anstream::adapter::strip_str(p).to_string())
        .collect();
    assert_eq!(p, ["a    | ", "long | "]);
    assert_eq!(render::prefixes(&["a".into()]), [""]);
}

#[tokio::test]
async fn since_and_unit_glob_survive_the_remote_shell() -> Result<(), Box<dyn std::error::Error>> {
    let fake = fake("logs-quote", &["a"])?;
    let mut out = Vec::new();
    let s = settings(&fake.hosts, Some("2 hours ago"));
    run_with(&fake.transport, &s, &mut out).await?;
    let text = String::from_utf8(out)?;
    assert_eq!(
        text,
        "a: [--no-pager]\na: [-o]\na: [short-iso]\na: [-n]\na: [5]\n\
         a: [--since]\na: [2 hours ago]\na: [-u]\na: [api@*.service]\n"
    );
    Ok(())
}

#[tokio::test]
async fn several_hosts_run_in_parallel_with_prefixed_lines()
-> Result<(), Box<dyn std::error::Error>> {
    let fake = fake("logs-multi", &["a", "bb"])?;
    let mut out = Vec::new();
    run_with(&fake.transport, &settings(&fake.hosts, None), &mut out).await?;
    let text = text(&out);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 14, "{text}");
    assert!(lines.contains(&"a  | a: [api@*.service]"), "{text}");
    assert!(lines.contains(&"bb | bb: [api@*.service]"), "{text}");
    Ok(())
}

#[tokio::test]
async fn unknown_service_runs_nothing_and_lists_the_known_ones()
-> Result<(), Box<dyn std::error::Error>> {
    let fake = fake("logs-unknown", &["a"])?;
    let mut s = settings(&fake.hosts, None);
    s.service = "nosuch".into();
    let mut out = Vec::new();
    let err = run_with(&fake.transport, &s, &mut out)
        .await
        .err()
        .ok_or("expected an error")?;
    assert_eq!(
        err.to_string(),
        "unknown service \"nosuch\" on a; it has: api, redis"
    );
    assert_eq!(err.exit_code(), ExitCode::from(crate::exit::EXIT_USAGE));
    assert!(out.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_failing_journalctl_names_the_host_after_the_others_printed()
-> Result<(), Box<dyn std::error::Error>> {
    let fake = fake("logs-broken", &["a", "broken"])?;
    let mut out = Vec::new();
    let err = run_with(&fake.transport, &settings(&fake.hosts, None), &mut out)
        .await
        .err()
        .ok_or("expected an error")?;
    assert_eq!(
        hostd_api::error_chain(&err),
        "reading the journal failed on broken: broken: `journalctl --no-pager -o short-iso -n 5 \
         -u api@*.service` failed on the host (exit 1): journalctl: no such unit"
    );
    assert_eq!(err.exit_code(), ExitCode::FAILURE);
    assert_eq!(String::from_utf8(out)?.lines().count(), 7);
    Ok(())
}
