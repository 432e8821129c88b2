use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hostd_api::{ActiveState, HealthReport, HealthStatus, ServiceSummary, UnitStatus};

use super::*;
use crate::config::{Config, ConfigError};

fn status(api_unit: &str) -> HostStatus {
    let unit = |service: &str, unit: &str| UnitStatus {
        service: service.into(),
        unit: unit.into(),
        instance: None,
        active_state: ActiveState::Active,
        sub_state: "running".into(),
    };
    let summary = |name: &str, unit: &str| ServiceSummary {
        name: name.into(),
        unit: unit.into(),
        running: true,
        instances: None,
        max_instances: None,
        restarts: 0,
    };
    HostStatus {
        hostname: "h".into(),
        hostd_version: "0.1.0".into(),
        hostd_build: None,
        hostd_uptime_seconds: 1,
        units: vec![
            unit("redis", "redis-server.service"),
            unit("api", "api@1.service"),
            unit("api", "api@2.service"),
        ],
        services: vec![
            summary("redis", "redis-server.service"),
            summary("api", api_unit),
        ],
        events: vec![],
        health: HealthReport {
            status: HealthStatus::Healthy,
            checked_at: "2026-01-01T00:00:00Z".into(),
            components: vec![],
        },
        instance: None,
    }
}

fn settings(hosts: &[&str], since: Option<&str>) -> Result<LogsSettings, ConfigError> {
    let names: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    let config = Config::from_str(
        &format!("[environments.x]\nhosts = [{}]\n", names.join(", ")),
        Path::new("/p/hostctl.toml"),
    )?;
    let (env, hosts) = config.select(None)?;
    Ok(LogsSettings {
        targets: Targets {
            environment: env.to_owned(),
            hosts: hosts.to_vec(),
        },
        service: "api".into(),
        follow: false,
        lines: 5,
        since: since.map(str::to_owned),
    })
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
fn journalctl_arguments() -> Result<(), ConfigError> {
    let mut s = settings(&["a"], Some("2 hours ago"))?;
    s.follow = true;
    let argv = journalctl_argv(&s, &["api@*.service".into(), "x.service".into()]);
    assert_eq!(
        argv.join(" "),
        "journalctl --no-pager -o short-iso -n 5 --since 2 hours ago --follow \
         -u api@*.service -u x.service"
    );
    let plain = journalctl_argv(&settings(&["a"], None)?, &["r.service".into()]);
    assert_eq!(
        plain.join(" "),
        "journalctl --no-pager -o short-iso -n 5 -u r.service"
    );
    Ok(())
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

/// Plays ssh: `hostd dial-stdio` answers the status from $STATUS_BODY;
/// anything else runs through `sh -c` as sshd would, with a journalctl on
/// PATH that prints each argument it got on its own line.
const FAKE_SSH: &str = r#"#!/bin/bash
dest=""
while [ "$#" -gt 0 ]; do case "$1" in -o|-p|-i|-l) shift 2;; --) shift; break;; *) dest="$1"; shift;; esac; done
if [ "$*" = "hostd dial-stdio" ]; then
  while IFS= read -r line; do line="${line%$'\r'}"; [ -z "$line" ] && break; done
  printf 'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s' "${#STATUS_BODY}" "$STATUS_BODY"
  exit 0
fi
[ "$dest" = broken ] && { echo "journalctl: no such unit" >&2; exit 1; }
cd "$FAKE_HOME" && PATH="$FAKE_BIN:$PATH" HOST="$dest" exec sh -c "$*"
"#;

const FAKE_JOURNALCTL: &str = r#"#!/bin/sh
for a in "$@"; do printf '%s: [%s]\n' "$HOST" "$a"; done
"#;

struct Fake {
    dir: std::path::PathBuf,
    transport: Transport,
}

impl Fake {
    fn new(test: &str, body: &HostStatus) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("hostctl-logs-{test}-{}", std::process::id()));
        let (bin, home) = (dir.join("bin"), dir.join("home"));
        std::fs::create_dir_all(&bin)?;
        // A file the unquoted glob would match in the remote home directory.
        std::fs::create_dir_all(&home)?;
        std::fs::write(home.join("api@x.service"), "")?;
        for (path, text) in [
            (dir.join("ssh"), FAKE_SSH),
            (bin.join("journalctl"), FAKE_JOURNALCTL),
        ] {
            std::fs::write(&path, text)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        let transport = Transport::with_program(dir.join("ssh"), dir.clone())
            .with_env("LC_ALL", "C")
            .with_env("FAKE_BIN", &bin)
            .with_env("FAKE_HOME", &home)
            .with_env("STATUS_BODY", serde_json::to_string(body)?);
        Ok(Self { dir, transport })
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn since_and_unit_glob_survive_the_remote_shell() -> Result<(), Box<dyn std::error::Error>> {
    let fake = Fake::new("quote", &status("api@.service"))?;
    let mut out = Vec::new();
    run_with(
        &fake.transport,
        &settings(&["a"], Some("2 hours ago"))?,
        &mut out,
    )
    .await?;
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
    let fake = Fake::new("multi", &status("api@.service"))?;
    let mut out = Vec::new();
    run_with(&fake.transport, &settings(&["a", "bb"], None)?, &mut out).await?;
    let text = anstream::adapter::strip_str(&String::from_utf8(out)?).to_string();
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
    let fake = Fake::new("unknown", &status("api@.service"))?;
    let mut s = settings(&["a"], None)?;
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
    let fake = Fake::new("broken", &status("api@.service"))?;
    let mut out = Vec::new();
    let err = run_with(
        &fake.transport,
        &settings(&["a", "broken"], None)?,
        &mut out,
    )
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
