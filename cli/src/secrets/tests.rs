use super::*;
use crate::fake_hosts::{FakeHosts, text};

struct Fake {
    fake: FakeHosts,
    settings: SecretsSettings,
}

impl Fake {
    fn new(test: &str, answers: &[(&str, &str)]) -> Result<Self, Box<dyn std::error::Error>> {
        let fake = FakeHosts::new(test, answers, "{}")?;
        let settings = SecretsSettings {
            targets: Targets {
                environment: "x".into(),
                hosts: fake.hosts.clone(),
            },
            json: false,
            timeout: Duration::from_secs(10),
        };
        Ok(Self { fake, settings })
    }

    fn requests(&self) -> Vec<String> {
        self.fake.requests()
    }

    fn requests_sorted(&self) -> Vec<String> {
        self.fake.requests_sorted()
    }
}

fn synced(changed: &[&str], restarted: &[&str], fetched: bool) -> String {
    let r = SecretsSyncResult {
        fetched,
        stale_since: (!fetched).then(|| "2026-01-01T00:00:00Z".into()),
        changed: changed.iter().map(|s| (*s).to_owned()).collect(),
        restarted: restarted.iter().map(|s| (*s).to_owned()).collect(),
        parameters: changed.iter().map(|s| format!("{s}_password")).collect(),
        error: (!fetched).then(|| "cannot reach SSM for /p/: timeout".into()),
    };
    format!("200 OK|{}", serde_json::to_string(&r).unwrap_or_default())
}

#[tokio::test]
async fn sync_says_per_host_what_changed_and_what_restarted()
-> Result<(), Box<dyn std::error::Error>> {
    let a = synced(&["api"], &["api"], true);
    let b = synced(&[], &[], true);
    let c =
        r#"200 OK|{"fetched":true,"changed":[],"restarted":[],"parameters":["backup_password"]}"#;
    let fake = Fake::new("sync", &[("a", &a), ("b", &b), ("c", c)])?;
    let mut out = Vec::new();
    sync_with(&fake.fake.transport, &fake.settings, &mut out).await?;
    let out = text(&out);
    assert_eq!(
        fake.requests(),
        [
            "a POST /v1/secrets/sync",
            "b POST /v1/secrets/sync",
            "c POST /v1/secrets/sync"
        ]
    );
    assert!(out.contains("changed: api; restarted: api"), "{out}");
    assert!(out.contains("nothing changed; nothing restarted"), "{out}");
    // A parameter only hostd uses changed: not "nothing changed".
    assert!(
        out.contains(
            "parameters changed: backup_password (no service receives them; nothing restarted)"
        ),
        "{out}"
    );
    assert!(
        out.ends_with("x: secrets sync done on 3 host(s)\n"),
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
    let err = sync_with(&fake.fake.transport, &fake.settings, &mut out)
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
    let err = list_with(&fake.fake.transport, &fake.settings, &mut out)
        .await
        .err();
    let out = text(&out);
    assert_eq!(
        fake.requests_sorted(),
        ["a GET /v1/secrets", "b GET /v1/secrets"]
    );
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
