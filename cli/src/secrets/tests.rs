use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::Config;

/// Plays ssh and hostd: every request gets "$ANSWER_<host>" as
/// `CODE REASON|BODY`; request lines are appended to $LOG.
const FAKE_SSH: &str = r#"#!/bin/bash
dest=""
while [ "$#" -gt 0 ]; do case "$1" in -o|-p|-i|-l) shift 2;; --) shift; break;; *) dest="$1"; shift;; esac; done
while IFS= read -r first; do
  first="${first%$'\r'}"
  while IFS= read -r line; do line="${line%$'\r'}"; [ -z "$line" ] && break; done
  echo "$dest ${first% HTTP/1.1}" >> "$LOG"
  var="ANSWER_$dest"; code="${!var%%|*}"; out="${!var#*|}"
  printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "$code" "${#out}" "$out"
done
"#;

struct Fake {
    dir: PathBuf,
    transport: Transport,
    settings: SecretsSettings,
}

impl Fake {
    fn new(test: &str, answers: &[(&str, &str)]) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("hostctl-sec-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let fake = dir.join("ssh");
        std::fs::write(&fake, FAKE_SSH)?;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
        let names: Vec<String> = answers.iter().map(|(h, _)| format!("{h:?}")).collect();
        let config = Config::from_str(
            &format!("[environments.x]\nhosts = [{}]\n", names.join(", ")),
            Path::new("/p/hostctl.toml"),
        )?;
        let (_, hosts) = config.select(None)?;
        let mut transport = Transport::with_program(&fake, dir.clone())
            .with_env("LC_ALL", "C")
            .with_env("LOG", dir.join("log"));
        for (host, answer) in answers {
            transport = transport.with_env(format!("ANSWER_{host}"), *answer);
        }
        let settings = SecretsSettings {
            targets: Targets {
                environment: "x".into(),
                hosts: hosts.to_vec(),
            },
            json: false,
            timeout: Duration::from_secs(10),
        };
        Ok(Self {
            dir,
            transport,
            settings,
        })
    }

    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &[u8]) -> String {
    anstream::adapter::strip_str(&String::from_utf8_lossy(out)).to_string()
}

fn synced(changed: &[&str], restarted: &[&str], fetched: bool) -> String {
    let r = SecretsSyncResult {
        fetched,
        stale_since: (!fetched).then(|| "2026-01-01T00:00:00Z".into()),
        changed: changed.iter().map(|s| (*s).to_owned()).collect(),
        restarted: restarted.iter().map(|s| (*s).to_owned()).collect(),
        error: (!fetched).then(|| "cannot reach SSM for /p/: timeout".into()),
    };
    format!("200 OK|{}", serde_json::to_string(&r).unwrap_or_default())
}

#[tokio::test]
async fn sync_says_per_host_what_changed_and_what_restarted()
-> Result<(), Box<dyn std::error::Error>> {
    let a = synced(&["api"], &["api"], true);
    let b = synced(&[], &[], true);
    let fake = Fake::new("sync", &[("a", &a), ("b", &b)])?;
    let mut out = Vec::new();
    sync_with(&fake.transport, &fake.settings, &mut out).await?;
    let out = text(&out);
    assert_eq!(
        fake.requests(),
        ["a POST /v1/secrets/sync", "b POST /v1/secrets/sync"]
    );
    assert!(out.contains("changed: api; restarted: api"), "{out}");
    assert!(out.contains("nothing changed; nothing restarted"), "{out}");
    assert!(
        out.ends_with("x: secrets sync done on 2 host(s)\n"),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_fetch_fails_the_sync_and_stops_before_the_next_host()
-> Result<(), Box<dyn std::error::Error>> {
    let a = synced(&[], &[], false);
    let b = synced(&[], &[], true);
    let mut fake = Fake::new("fail", &[("a", &a), ("b", &b)])?;
    fake.settings.json = true;
    let mut out = Vec::new();
    let err = sync_with(&fake.transport, &fake.settings, &mut out)
        .await
        .err()
        .ok_or("expected a failure")?;
    assert_eq!(err.to_string(), "secrets sync failed on a");
    assert_eq!(err.exit_code(), ExitCode::FAILURE);
    assert_eq!(fake.requests(), ["a POST /v1/secrets/sync"]);
    let json: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(json[0]["outcome"], "failed");
    assert_eq!(json[0]["result"]["fetched"], false);
    assert_eq!(json[1]["outcome"], "not_touched");
    Ok(())
}

#[tokio::test]
async fn list_shows_a_table_per_host_and_names_a_host_without_secrets()
-> Result<(), Box<dyn std::error::Error>> {
    let list = hostd_api::SecretsList {
        path: "/app/".into(),
        last_success: Some("2026-01-01T00:00:00Z".into()),
        stale_since: None,
        parameters: vec![hostd_api::SecretInfo {
            name: "api_secret_key".into(),
            version: 3,
            last_modified: Some("2025-12-31T10:00:00Z".into()),
            services: vec!["api".into()],
        }],
    };
    let a = format!("200 OK|{}", serde_json::to_string(&list)?);
    let b = r#"404 Not Found|{"error":"secrets are not configured on this host (no [secrets] section in hostd.toml)"}"#;
    let fake = Fake::new("list", &[("a", &a), ("b", b)])?;
    let mut out = Vec::new();
    let err = list_with(&fake.transport, &fake.settings, &mut out)
        .await
        .err();
    let out = text(&out);
    assert_eq!(fake.requests(), ["a GET /v1/secrets", "b GET /v1/secrets"]);
    assert!(
        out.contains("a  a  /app/  fetched 2026-01-01T00:00:00Z"),
        "{out}"
    );
    assert!(
        out.contains("NAME            VERSION  LAST MODIFIED         SERVICES"),
        "{out}"
    );
    assert!(
        out.contains("api_secret_key        3  2025-12-31T10:00:00Z  api"),
        "{out}"
    );
    assert!(out.contains("no [secrets] section"), "{out}");
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("secrets list failed on b")
    );
    Ok(())
}
