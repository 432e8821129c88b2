//! The restore sequence and its recovery against a fake host: the order of
//! stops, stages, swaps and starts, and what each failure leaves behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hostd_api::RestoreEvent;

use super::marker::{self, Marker, Phase};
use super::paths::PathsError;
use super::pg::PgRestoreError;
use super::sequence::{self, Copies, Pieces, RestoreFailure, RestoreHost, StageError, SwapError};
use super::*;
use crate::manager::ManagerError;
use crate::state_file::JsonFile;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Records every call; the steps named in `fail` fail.
#[derive(Default)]
struct FakeHost {
    calls: Mutex<Vec<String>>,
    fail: BTreeSet<String>,
    /// The marker's phase when each call was made.
    marker: Option<JsonFile<Marker>>,
}

impl FakeHost {
    fn failing(steps: &[&str], marker: &JsonFile<Marker>) -> Self {
        Self {
            fail: steps.iter().map(|s| (*s).to_owned()).collect(),
            marker: Some(marker.clone()),
            ..Self::default()
        }
    }

    /// Records `call`; true when it is to fail.
    fn call(&self, call: String) -> bool {
        let phase = self
            .marker
            .as_ref()
            .and_then(|m| m.load().ok().flatten())
            .map(|m| format!(" [{:?}, to start: {}]", m.phase, m.stopped.join(" ")))
            .unwrap_or_default();
        let fails = self.fail.contains(&call);
        self.calls
            .lock()
            .map(|mut c| c.push(format!("{call}{phase}")))
            .ok();
        fails
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

fn refused() -> ManagerError {
    ManagerError::Gone
}

impl RestoreHost for FakeHost {
    async fn stop(&self, service: &str) -> Result<(), ManagerError> {
        if self.call(format!("stop {service}")) {
            return Err(refused());
        }
        Ok(())
    }

    async fn start(&self, service: &str) -> Result<(), ManagerError> {
        if self.call(format!("start {service}")) {
            return Err(refused());
        }
        Ok(())
    }

    async fn stage(&self, events: &Events) -> Result<(), StageError> {
        let t = events.step("restore postgres api");
        if self.call("stage".into()) {
            return Err(StageError::Pg(PgRestoreError::Failed {
                what: "restoring api.dump into hostd_restore_api".into(),
                detail: "pg_restore: out of disk space".into(),
            }));
        }
        events.done("restore postgres api", t);
        Ok(())
    }

    async fn swap_database(&self, db: &str) -> Result<(), SwapError> {
        if self.call(format!("swap database {db}")) {
            return Err(SwapError::Pg(PgRestoreError::Failed {
                what: format!("renaming {db}"),
                detail: "permission denied".into(),
            }));
        }
        Ok(())
    }

    async fn swap_path(&self, path: &Path) -> Result<(), SwapError> {
        if self.call(format!("swap {}", path.display())) {
            return Err(SwapError::Paths(PathsError::Restore {
                path: path.to_owned(),
                detail: "gone".into(),
            }));
        }
        Ok(())
    }

    async fn drop_copies(&self, which: Copies, databases: &[String], paths: &[PathBuf]) {
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        self.call(format!(
            "drop {which:?} {} {}",
            databases.join(","),
            paths.join(",")
        ));
    }
}

fn pieces() -> Pieces {
    Pieces {
        stop: vec!["api".into(), "web".into()],
        databases: vec!["api".into()],
        redis: Some(("/data/redis/dump.rdb".into(), "redis".into())),
        files: vec!["/srv/uploads".into()],
    }
}

async fn restore(
    host: &FakeHost,
    marker: &JsonFile<Marker>,
) -> (Result<(), RestoreFailure>, Vec<RestoreEvent>) {
    let (events, mut rx) = Events::new();
    let result = sequence::run(host, &pieces(), "ann@laptop", marker, &events).await;
    drop(events);
    let mut all = Vec::new();
    while let Some(e) = rx.recv().await {
        all.push(e);
    }
    (result, all)
}

#[tokio::test]
async fn a_restore_stops_stages_swaps_and_starts_in_that_order() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let host = FakeHost::failing(&[], &marker);
    let (result, events) = restore(&host, &marker).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        host.calls(),
        [
            "stop api [Staging, to start: api web]",
            "stop web [Staging, to start: api web]",
            "stage [Staging, to start: api web]",
            "swap database api [Swapping, to start: api web redis]",
            "stop redis [Swapping, to start: api web redis]",
            "swap /data/redis/dump.rdb [Swapping, to start: api web redis]",
            "start redis [Swapping, to start: api web redis]",
            "swap /srv/uploads [Swapping, to start: api web redis]",
            "start api [Starting, to start: api web redis]",
            "start web [Starting, to start: api web redis]",
        ]
    );
    assert!(marker.load()?.is_none());
    let steps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RestoreEvent::StepDone { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "stop api",
            "stop web",
            "restore postgres api",
            "swap",
            "start api",
            "start web"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_service_that_will_not_stop_ends_the_restore_with_the_others_started_again() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let host = FakeHost::failing(&["stop web"], &marker);
    let (result, _) = restore(&host, &marker).await;
    let text = result.map_err(|e| e.to_string());
    assert!(
        matches!(&text, Err(t) if t.starts_with("cannot stop web: ") && t.ends_with("; nothing changed")),
        "{text:?}"
    );
    assert_eq!(
        host.calls(),
        [
            "stop api [Staging, to start: api web]",
            "stop web [Staging, to start: api web]",
            "start api [Staging, to start: api web]"
        ]
    );
    assert!(marker.load()?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_failed_stage_drops_what_it_staged_and_leaves_the_live_data() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let host = FakeHost::failing(&["stage"], &marker);
    let (result, _) = restore(&host, &marker).await;
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Err("restoring api.dump into hostd_restore_api: pg_restore: out of disk space; nothing changed: the live data is as it was".into())
    );
    assert_eq!(
        host.calls(),
        [
            "stop api [Staging, to start: api web]",
            "stop web [Staging, to start: api web]",
            "stage [Staging, to start: api web]",
            "drop Staged api /srv/uploads,/data/redis/dump.rdb [Staging, to start: api web]",
            "start api [Staging, to start: api web]",
            "start web [Staging, to start: api web]",
        ]
    );
    assert!(marker.load()?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_failed_swap_keeps_the_previous_copies_and_starts_the_services() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let host = FakeHost::failing(&["swap /data/redis/dump.rdb"], &marker);
    let (result, _) = restore(&host, &marker).await;
    let text = result.map_err(|e| e.to_string());
    assert!(
        matches!(&text, Err(t) if t.starts_with("swapping the restored data in failed: restoring /data/redis/dump.rdb: gone")
            && t.contains("keeps its previous copy")),
        "{text:?}"
    );
    let calls = host.calls();
    // Redis is started again even though its file did not move.
    assert_eq!(
        &calls[4..],
        [
            "stop redis [Swapping, to start: api web redis]",
            "swap /data/redis/dump.rdb [Swapping, to start: api web redis]",
            "start redis [Swapping, to start: api web redis]",
            "start api [Swapping, to start: api web redis]",
            "start web [Swapping, to start: api web redis]",
        ]
    );
    assert!(!calls.iter().any(|c| c.starts_with("drop")), "{calls:?}");
    assert!(marker.load()?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_service_that_does_not_come_back_is_named_with_the_data_restored() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let host = FakeHost::failing(&["start api"], &marker);
    let (result, _) = restore(&host, &marker).await;
    let text = result.map_err(|e| e.to_string());
    assert!(
        matches!(&text, Err(t) if t.starts_with("the data is restored, but api did not start healthy")),
        "{text:?}"
    );
    assert!(marker.load()?.is_none());
    Ok(())
}

#[tokio::test]
async fn recovery_drops_staged_copies_only_before_the_swap_and_starts_what_was_stopped() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let mut m = Marker {
        started: "2026-12-07T00:00:00Z".into(),
        requested_by: "ann@laptop".into(),
        phase: Phase::Staging,
        stopped: vec!["api".into()],
        databases: vec!["api".into()],
        paths: vec!["/srv/uploads".into()],
    };
    marker.save(&m)?;
    let host = FakeHost::default();
    sequence::recover(&host, &marker, &m).await;
    assert_eq!(host.calls(), ["drop Staged api /srv/uploads", "start api"]);
    assert!(marker.load()?.is_none());

    m.phase = Phase::Swapping;
    marker.save(&m)?;
    let host = FakeHost::default();
    sequence::recover(&host, &marker, &m).await;
    assert_eq!(host.calls(), ["start api"]);
    assert!(marker.load()?.is_none());
    Ok(())
}

#[test]
fn restore_and_backup_routes_answer_any_body_without_a_panic() -> Res {
    use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

    use crate::request_strategies::{body, send};
    const RESTORE: &[&str] = &[
        "snapshot",
        "only",
        "dry_run",
        "requested_by",
        "confirmed",
        "lock_wait_seconds",
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let lifetime = Lifetime::new();
    let config = Arc::new(Config::parse(std::path::Path::new("t.toml"), "")?);
    let router = rt.block_on(async {
        let r = Restorer {
            config,
            backup: crate::backup::BackupHandle::unconfigured(),
            manager: ManagerHandle::detached(),
            ops: crate::ops::spawn(&lifetime),
            lifetime: lifetime.clone(),
        };
        http::routes(r).merge(crate::backup::http::routes(
            crate::backup::BackupHandle::unconfigured(),
        ))
    });
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 256,
        ..RunnerConfig::default()
    });
    for (uri, fields) in [("/v1/restore", RESTORE), ("/v1/backups", &["wait"][..])] {
        runner.run(&body(fields), |b| {
            let status = rt
                .block_on(send(router.clone(), "POST", uri, b))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Without [backup] every decodable request is a 404 that says so.
            proptest::prop_assert!(status < 500, "{uri} answered {status}");
            Ok(())
        })?;
    }
    Ok(())
}
