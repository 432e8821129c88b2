use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::secrets::source::fake::{FakeSource, unreachable_error};
use crate::secrets::{Secret, SecretSet, SecretValue};

const CANARY: &str = "canary-value-7f3a";

fn set(values: &[(&str, &str, i64)]) -> SecretSet {
    values
        .iter()
        .map(|(n, v, version)| Secret {
            name: (*n).to_owned(),
            value: SecretValue::new(format!("{CANARY}-{v}")),
            version: *version,
            last_modified: Some(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            ),
        })
        .collect()
}

fn config(dir: &Path) -> Result<Arc<Config>, crate::config::ConfigError> {
    let text = format!(
        "[secrets]\npath = \"/app/\"\nstore_dir = \"{0}/store\"\n\
         [units]\ntarget_dir = \"{0}/units\"\n\
         [services.api]\nunit = \"api@.service\"\n\
         [services.worker]\nunit = \"worker.service\"\nsecrets = [\"db\"]\n\
         [services.redis]\nunit = \"redis-server.service\"\n",
        dir.display()
    );
    Ok(Arc::new(Config::parse(Path::new("hostd.toml"), &text)?))
}

/// Records what a refresh asked of systemd and the manager.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    stopped: BTreeSet<String>,
}

impl Recorder {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
    fn take(&self) -> Vec<String> {
        self.calls
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

impl Apply for Recorder {
    async fn reload(&self) -> Result<(), crate::systemd::SystemdError> {
        if let Ok(mut c) = self.calls.lock() {
            c.push("reload".into());
        }
        Ok(())
    }
    fn keeps_running(&self, service: &str) -> bool {
        !self.stopped.contains(service)
    }
    async fn restart(&self, service: &str) -> Result<(), crate::manager::ManagerError> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(format!("restart {service}"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn only_services_whose_secrets_changed_restart() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let c = config(tmp.path())?;
    let v1 = set(&[("db", "a", 1), ("key", "b", 1)]);
    let v2 = set(&[("db", "a", 1), ("key", "c", 2)]);
    let source = FakeSource::new(vec![
        Ok(v1.clone()),
        Ok(v1),
        Ok(v2),
        Err(unreachable_error()),
    ]);
    let (mut rt, rx) = Runtime::new(Arc::clone(&c), Ok(source), tmp.path().join("creds"));
    let apply = Recorder {
        stopped: BTreeSet::from(["worker".to_owned()]),
        ..Recorder::default()
    };

    let first = refresh_once(&mut rt, &rx, &apply).await;
    assert!(first.fetched && first.error.is_none(), "{first:?}");
    assert_eq!(first.changed, ["api", "worker"]);
    assert_eq!(first.restarted, ["api"], "a stopped service is not started");
    assert_eq!(apply.take(), ["reload", "restart api"]);

    let same = refresh_once(&mut rt, &rx, &apply).await;
    assert!(same.fetched && same.changed.is_empty() && same.restarted.is_empty());
    assert!(
        apply.calls().is_empty(),
        "nothing changed, nothing restarts"
    );

    let rotated = refresh_once(&mut rt, &rx, &apply).await;
    assert_eq!(rotated.changed, ["api"], "worker does not receive `key`");
    assert_eq!(
        apply.take(),
        ["restart api"],
        "no drop-in changed: no reload"
    );

    let failed = refresh_once(&mut rt, &rx, &apply).await;
    assert!(!failed.fetched && failed.changed.is_empty());
    assert!(failed.stale_since.is_some());
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("cannot reach SSM"), "{error}");
    assert!(apply.calls().is_empty(), "a failed fetch changes nothing");
    assert_eq!(
        std::fs::read(tmp.path().join("creds/api/key"))?,
        format!("{CANARY}-c").into_bytes(),
        "the last good set stays"
    );
    Ok(())
}

#[tokio::test]
async fn list_and_sync_bodies_carry_names_never_values() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let c = config(tmp.path())?;
    let source = FakeSource::new(vec![Ok(set(&[("db", "a", 3), ("key", "b", 1)]))]);
    let (mut rt, rx) = Runtime::new(Arc::clone(&c), Ok(source), tmp.path().join("creds"));
    let synced = refresh_once(&mut rt, &rx, &Recorder::default()).await;
    let listed = list(&c, &rx.borrow())?;

    let db = listed.parameters.iter().find(|p| p.name == "db");
    assert_eq!(db.map(|p| p.version), Some(3));
    assert_eq!(
        db.map(|p| p.services.clone()),
        Some(vec!["api".to_owned(), "worker".to_owned()])
    );
    assert_eq!(
        db.and_then(|p| p.last_modified.clone()).as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    assert_eq!(listed.path, "/app/");
    let bodies = [
        serde_json::to_string(&synced)?,
        serde_json::to_string(&listed)?,
        format!("{synced:?}{listed:?}"),
    ];
    assert!(bodies[1].contains("\"key\""), "{}", bodies[1]);
    for body in bodies {
        assert!(!body.contains(CANARY), "a value leaked: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn without_secrets_sync_and_list_say_not_configured() -> Result<(), Box<dyn std::error::Error>>
{
    let c = Arc::new(Config::parse(Path::new("hostd.toml"), "")?);
    let (_tx, rx) = watch::channel(SecretsState::default());
    let handle = SecretsHandle::detached(c, rx);
    assert!(matches!(
        handle.sync().await,
        Err(RefreshError::NotConfigured)
    ));
    let e = handle.list().map(|_| ()).map_err(|e| e.to_string());
    assert!(e.is_err_and(|e| e.contains("no [secrets] section")));
    Ok(())
}

#[test]
fn periodic_refreshes_are_spread_by_up_to_a_tenth() {
    let every = std::time::Duration::from_secs(300);
    let waits: BTreeSet<_> = (0..20).map(|_| super::jittered(every)).collect();
    assert!(
        waits
            .iter()
            .all(|w| *w >= every && *w <= every + every / 10),
        "{waits:?}"
    );
    assert!(waits.len() > 1, "no spread: {waits:?}");
}
