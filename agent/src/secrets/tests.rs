use std::time::{Duration, SystemTime};

use super::source::fake::{FakeSource, unreachable_error};
use super::*;

const PREFIX: &str = "/app/prod/";

/// A secret as SSM would give it, for every test of the secrets module.
pub(super) fn secret(name: &str, value: &str, version: i64) -> Secret {
    Secret {
        name: name.to_owned(),
        value: SecretValue::new(value.to_owned()),
        version,
        last_modified: None,
    }
}

fn set(items: &[(&str, &str, i64)]) -> SecretSet {
    items.iter().map(|(n, v, ver)| secret(n, v, *ver)).collect()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn required(names: &[&str]) -> Vec<ParameterName> {
    names
        .iter()
        .filter_map(|n| ParameterName::try_from((*n).to_owned()).ok())
        .collect()
}

#[tokio::test]
async fn first_success_is_fresh_all_added_and_persisted() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path(), PREFIX);
    let mut tracker = Tracker::load(&store);
    let source = FakeSource::new(vec![Ok(set(&[("db", "s3cret", 1), ("api/key", "k", 2)]))]);
    let out = fetch_with_fallback(&source, PREFIX, &[], &store, &mut tracker, at(0)).await;
    match out {
        Outcome::Fresh {
            set: s,
            changes,
            save_error: None,
        } => {
            assert_eq!(s.len(), 2);
            assert_eq!(changes.added.len(), 2);
        }
        other => return Err(format!("expected fresh: {other:?}").into()),
    }
    assert_eq!(tracker.stale_since(), None);
    assert_eq!(store.load()?.map(|s| s.len()), Some(2));
    Ok(())
}

#[tokio::test]
async fn outage_serves_last_good_and_keeps_the_first_failure_time()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path(), PREFIX);
    let good = set(&[("db", "s3cret", 1)]);
    let source = FakeSource::new(vec![
        Ok(good.clone()),
        Err(unreachable_error()),
        Err(unreachable_error()),
        Ok(set(&[("db", "rotated", 2)])),
    ]);
    let mut tracker = Tracker::load(&store);
    assert!(matches!(
        fetch_with_fallback(&source, PREFIX, &[], &store, &mut tracker, at(0)).await,
        Outcome::Fresh { .. }
    ));
    match fetch_with_fallback(&source, PREFIX, &[], &store, &mut tracker, at(10)).await {
        Outcome::Stale { set: s, since, .. } => {
            assert_eq!(s, good);
            assert_eq!(since, at(10));
        }
        other => return Err(format!("expected stale: {other:?}").into()),
    }
    match fetch_with_fallback(&source, PREFIX, &[], &store, &mut tracker, at(20)).await {
        Outcome::Stale { since, .. } => assert_eq!(since, at(10)),
        other => return Err(format!("expected stale: {other:?}").into()),
    }
    assert_eq!(tracker.stale_since(), Some(at(10)));
    assert!(
        tracker
            .stale_message()
            .is_some_and(|m| m.starts_with("secrets stale since 2023-11-14T22:13:30Z")),
        "{:?}",
        tracker.stale_message()
    );
    // Recovery: fresh again, and the change is named.
    match fetch_with_fallback(&source, PREFIX, &[], &store, &mut tracker, at(30)).await {
        Outcome::Fresh { changes, .. } => {
            assert_eq!(changes.changed.iter().collect::<Vec<_>>(), ["db"]);
        }
        other => return Err(format!("expected fresh: {other:?}").into()),
    }
    assert_eq!(tracker.stale_since(), None);
    assert_eq!(tracker.stale_message(), None);
    Ok(())
}

#[tokio::test]
async fn a_reboot_during_an_outage_starts_from_disk() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path(), PREFIX);
    store.save(&set(&[("db", "s3cret", 1)]))?;
    let mut tracker = Tracker::load(&store);
    let source = FakeSource::new(vec![Err(unreachable_error())]);
    match fetch_with_fallback(&source, PREFIX, &[], &store, &mut tracker, at(5)).await {
        Outcome::Stale { set: s, since, .. } => {
            assert_eq!(s.get("db").map(|s| s.value.expose()), Some("s3cret"));
            assert_eq!(since, at(5));
        }
        other => return Err(format!("expected stale: {other:?}").into()),
    }
    Ok(())
}

#[tokio::test]
async fn nothing_known_and_no_ssm_is_unavailable() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path(), PREFIX);
    let mut tracker = Tracker::load(&store);
    let source = FakeSource::new(vec![Err(unreachable_error())]);
    let out = fetch_with_fallback(&source, PREFIX, &[], &store, &mut tracker, at(0)).await;
    assert!(matches!(out, Outcome::Unavailable { .. }), "{out:?}");
    assert_eq!(tracker.stale_since(), Some(at(0)));
    Ok(())
}

#[tokio::test]
async fn a_missing_required_name_does_not_replace_the_good_set()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path(), PREFIX);
    let good = set(&[("db", "s3cret", 1), ("api/key", "k", 1)]);
    let source = FakeSource::new(vec![Ok(good.clone()), Ok(set(&[("db", "s3cret", 1)]))]);
    let req = required(&["db", "api/key"]);
    let mut tracker = Tracker::load(&store);
    let first = fetch_with_fallback(&source, PREFIX, &req, &store, &mut tracker, at(0)).await;
    assert!(matches!(first, Outcome::Fresh { .. }), "{first:?}");
    match fetch_with_fallback(&source, PREFIX, &req, &store, &mut tracker, at(1)).await {
        Outcome::Stale { set: s, error, .. } => {
            assert_eq!(s, good);
            let text = error.to_string();
            assert!(text.contains("api/key") && text.contains(PREFIX), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
        other => return Err(format!("expected stale: {other:?}").into()),
    }
    assert_eq!(store.load()?, Some(good));
    Ok(())
}

#[tokio::test]
async fn an_unchanged_set_is_not_rewritten() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path(), PREFIX);
    let source = FakeSource::new(vec![Ok(set(&[("db", "s3cret", 1)]))]);
    let mut tracker = Tracker::load(&store);
    fetch_with_fallback(&source, PREFIX, &[], &store, &mut tracker, at(0)).await;
    std::fs::remove_file(store.path())?;
    match fetch_with_fallback(&source, PREFIX, &[], &store, &mut tracker, at(1)).await {
        Outcome::Fresh { changes, .. } => assert!(changes.is_empty()),
        other => return Err(format!("expected fresh: {other:?}").into()),
    }
    assert!(!store.path().exists(), "an unchanged set was written again");
    assert_eq!(source.calls.lock().map(|c| *c).unwrap_or(0), 2);
    Ok(())
}

#[test]
fn required_check_names_every_missing_parameter() {
    let s = set(&[("a", "v", 1)]);
    let e = check_required(PREFIX, &s, &required(&["a", "b", "c/d"]));
    assert_eq!(
        e.err().map(|e| e.to_string()).as_deref(),
        Some("required parameter(s) missing under /app/prod/: b, c/d")
    );
    assert!(check_required(PREFIX, &s, &required(&["a"])).is_ok());
}
