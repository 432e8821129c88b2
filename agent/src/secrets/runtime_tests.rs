use std::path::Path;
use std::time::Duration;

use super::*;
use crate::secrets::source::fake::{FakeSource, unreachable_error};
use crate::secrets::{Secret, SecretValue};

fn set(names: &[&str]) -> SecretSet {
    names
        .iter()
        .map(|n| Secret {
            name: (*n).to_owned(),
            value: SecretValue::new(format!("value-of-{n}")),
            version: 1,
            last_modified: None,
        })
        .collect()
}

fn config(dir: &Path, required: &str) -> Result<Arc<Config>, crate::config::ConfigError> {
    let text = format!(
        "[secrets]\npath = \"/app/\"\nstore_dir = \"{0}/store\"\nrequired = [{required}]\n\
         [units]\ntarget_dir = \"{0}/units\"\n\
         [services.api]\nunit = \"api@.service\"\n\
         [services.redis]\nunit = \"redis-server.service\"\n",
        dir.display()
    );
    Ok(Arc::new(Config::parse(Path::new("hostd.toml"), &text)?))
}

#[tokio::test]
async fn fresh_then_stale_keeps_the_set_and_says_since_when()
-> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let c = config(tmp.path(), "\"db\"")?;
    let source = FakeSource::new(vec![Ok(set(&["db", "key"])), Err(unreachable_error())]);
    let (mut rt, rx) = Runtime::new(Arc::clone(&c), Ok(source), tmp.path().join("creds"));
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);

    let first = rt.refresh(t0).await;
    assert!(first.reload);
    assert_eq!(first.changed, BTreeSet::from(["api".to_owned()]));
    let state = rx.borrow().clone();
    assert_eq!(state.last_success, Some(t0));
    assert_eq!(state.stale_message(), None);
    assert_eq!(gate(&c, &state, "api"), Ok(()));
    assert_eq!(gate(&c, &state, "redis"), Ok(()), "redis receives none");

    let t1 = t0 + Duration::from_secs(60);
    let second = rt.refresh(t1).await;
    assert!(second.changed.is_empty() && !second.reload);
    let state = rx.borrow().clone();
    assert_eq!(state.last_success, Some(t0));
    assert_eq!(
        state.stale_message().as_deref(),
        Some("secrets stale since 2023-11-14T22:14:20Z")
    );
    assert_eq!(
        gate(&c, &state, "api"),
        Ok(()),
        "the stored set still serves"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("creds/api/db"))?,
        b"value-of-db"
    );
    let shown = format!("{state:?}");
    assert!(!shown.contains("value-of"), "{shown}");
    Ok(())
}

#[tokio::test]
async fn a_missing_required_name_blocks_the_service_by_name()
-> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let c = config(tmp.path(), "\"db\", \"nope\"")?;
    let source = FakeSource::new(vec![Ok(set(&["db"]))]);
    let (mut rt, rx) = Runtime::new(Arc::clone(&c), Ok(source), tmp.path().join("creds"));
    rt.refresh(SystemTime::now()).await;
    let e = gate(&c, &rx.borrow(), "api")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("nope") && e.contains("api"), "{e}");
    assert!(!e.contains("value-of"), "{e}");
    Ok(())
}

#[tokio::test]
async fn nothing_stored_and_no_ssm_starts_nothing_that_needs_secrets()
-> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let c = config(tmp.path(), "")?;
    let (mut rt, rx) = Runtime::new(
        Arc::clone(&c),
        Ok(FakeSource::new(vec![])),
        tmp.path().join("creds"),
    );
    rt.refresh(SystemTime::now()).await;
    let state = rx.borrow().clone();
    assert!(state.delivered.is_none() && state.stale_since.is_some());
    let e = gate(&c, &state, "api");
    assert!(
        matches!(&e, Err(GateError::Unavailable { reason, .. }) if reason.contains("cannot reach SSM")),
        "{e:?}"
    );
    assert_eq!(gate(&c, &state, "redis"), Ok(()));
    Ok(())
}

#[tokio::test]
async fn a_wired_password_is_required_and_published_only_redacted()
-> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let text = format!(
        "[secrets]\npath = \"/app/\"\nstore_dir = \"{0}/store\"\npostgres_password = \"db\"\n\
         [units]\ntarget_dir = \"{0}/units\"\n\
         [services.api]\nunit = \"api@.service\"\ndatabase = \"api\"\n",
        tmp.path().display()
    );
    let c = Arc::new(Config::parse(Path::new("hostd.toml"), &text)?);
    let source = FakeSource::new(vec![Ok(set(&["key"])), Ok(set(&["db", "key"]))]);
    let (mut rt, rx) = Runtime::new(Arc::clone(&c), Ok(source), tmp.path().join("creds"));

    rt.refresh(SystemTime::now()).await;
    let e = gate(&c, &rx.borrow(), "api");
    assert!(
        matches!(&e, Err(GateError::Unavailable { reason, .. }) if reason.contains("db")),
        "a set without the wired password is not taken: {e:?}"
    );

    rt.refresh(SystemTime::now()).await;
    let state = rx.borrow().clone();
    assert_eq!(gate(&c, &state, "api"), Ok(()));
    assert_eq!(
        state.wired.postgres_password.as_ref().map(|v| v.expose()),
        Some("value-of-db")
    );
    let shown = format!("{state:?}");
    assert!(!shown.contains("value-of"), "{shown}");
    Ok(())
}
