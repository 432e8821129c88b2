//! The restore sequence and its recovery against a fake host: the order of
//! stops, stages, swaps and starts, and what each failure leaves behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hostd_api::RestoreEvent;

use super::marker::{self, Marker, Phase};
use super::paths::PathsError;
use super::pg::PgRestoreError;
use super::seam::{Copies, RestoreHost, StageError, SwapError};
use super::sequence::{self, Pieces, RestoreFailure};
use super::swap::RedisRdb;
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

    async fn unswap_database(&self, db: &str) -> Result<(), SwapError> {
        if self.call(format!("unswap database {db}")) {
            return Err(SwapError::Pg(PgRestoreError::Failed {
                what: format!("renaming {db} back"),
                detail: "connection lost".into(),
            }));
        }
        Ok(())
    }

    async fn unswap_path(&self, path: &Path) -> Result<(), SwapError> {
        if self.call(format!("unswap {}", path.display())) {
            return Err(SwapError::Paths(PathsError::Restore {
                path: path.to_owned(),
                detail: "read-only file system".into(),
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
        redis: Some(RedisRdb {
            rdb: "/data/redis/dump.rdb".into(),
            service: "redis".into(),
        }),
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

const SWAPPING: &str = "[Swapping, to start: api web redis]";

/// The calls after the two stops and the stage, without the marker's
/// phase when it is Swapping.
fn after_stage(host: &FakeHost) -> Vec<String> {
    host.calls()[3..]
        .iter()
        .map(|c| c.replace(&format!(" {SWAPPING}"), ""))
        .collect()
}

#[tokio::test]
async fn a_failed_files_swap_swaps_the_database_and_redis_back() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let host = FakeHost::failing(&["swap /srv/uploads"], &marker);
    let (result, _) = restore(&host, &marker).await;
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Err(
            "swapping the restored /srv/uploads in failed: restoring /srv/uploads: gone; what was \
             already swapped was swapped back: the live data is as it was"
                .into()
        )
    );
    assert_eq!(
        after_stage(&host),
        [
            "swap database api",
            "stop redis",
            "swap /data/redis/dump.rdb",
            "start redis",
            "swap /srv/uploads",
            // Newest first, the failed one included: it may be half done.
            "unswap /srv/uploads",
            "stop redis",
            "unswap /data/redis/dump.rdb",
            "start redis",
            "unswap database api",
            "drop Staged api /srv/uploads,/data/redis/dump.rdb",
            "start api",
            "start web",
        ]
    );
    assert!(marker.load()?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_failed_database_swap_has_nothing_to_swap_back() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let host = FakeHost::failing(&["swap database api"], &marker);
    let (result, _) = restore(&host, &marker).await;
    assert!(result.is_err());
    assert_eq!(
        after_stage(&host),
        [
            "swap database api",
            "drop Staged api /srv/uploads,/data/redis/dump.rdb",
            "start api",
            "start web",
        ]
    );
    Ok(())
}

#[tokio::test]
async fn what_cannot_be_swapped_back_is_named_and_no_copy_is_dropped() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let host = FakeHost::failing(&["swap /srv/uploads", "unswap database api"], &marker);
    let (result, _) = restore(&host, &marker).await;
    let text = result.map_err(|e| e.to_string());
    assert!(
        matches!(&text, Err(t) if t.contains("could not be swapped back, so they hold the restored data: \
            database api (renaming api back: connection lost)")),
        "{text:?}"
    );
    let calls = host.calls();
    assert!(!calls.iter().any(|c| c.starts_with("drop")), "{calls:?}");
    // Redis and the files are back, and every service runs.
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("unswap /data/redis/dump.rdb"))
    );
    assert!(calls.ends_with(&[
        format!("start api {SWAPPING}"),
        format!("start web {SWAPPING}")
    ]));
    Ok(())
}

#[tokio::test]
async fn redis_is_started_again_when_its_file_does_not_move() -> Res {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    let host = FakeHost::failing(&["swap /data/redis/dump.rdb"], &marker);
    let (result, _) = restore(&host, &marker).await;
    assert!(result.is_err());
    assert_eq!(
        &after_stage(&host)[..5],
        [
            "swap database api",
            "stop redis",
            "swap /data/redis/dump.rdb",
            "start redis",
            "stop redis",
        ]
    );
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

fn interrupted(phase: Phase, swapped: usize) -> Marker {
    Marker {
        started: "2026-12-07T00:00:00Z".into(),
        requested_by: "ann@laptop".into(),
        phase,
        stopped: vec!["api".into(), "redis".into()],
        databases: vec!["api".into()],
        paths: vec!["/srv/uploads".into(), "/data/redis/dump.rdb".into()],
        redis: Some(RedisRdb {
            rdb: "/data/redis/dump.rdb".into(),
            service: "redis".into(),
        }),
        swapped,
    }
}

async fn recover(m: &Marker) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let marker = marker::file(dir.path());
    marker.save(m)?;
    let host = FakeHost::default();
    sequence::recover(&host, &marker, m).await;
    assert!(marker.load()?.is_none());
    Ok(host.calls())
}

#[tokio::test]
async fn recovery_swaps_back_exactly_what_had_begun_to_swap() -> Res {
    const DROP: &str = "drop Staged api /srv/uploads,/data/redis/dump.rdb";
    assert_eq!(
        recover(&interrupted(Phase::Staging, 0)).await?,
        [DROP, "start api", "start redis"]
    );
    // Killed with Redis stopped for its swap: back, and Redis runs.
    assert_eq!(
        recover(&interrupted(Phase::Swapping, 2)).await?,
        [
            "stop redis",
            "unswap /data/redis/dump.rdb",
            "start redis",
            "unswap database api",
            DROP,
            "start api",
            "start redis"
        ]
    );
    assert_eq!(
        recover(&interrupted(Phase::Swapping, 3)).await?[..2],
        ["unswap /srv/uploads", "stop redis"]
    );
    // Everything swapped in: the restored data stays.
    assert_eq!(
        recover(&interrupted(Phase::Starting, 3)).await?,
        ["start api", "start redis"]
    );
    Ok(())
}

#[test]
fn a_marker_of_an_earlier_hostd_reads_as_nothing_swapped() -> Res {
    let old = r#"{"started":"t","requested_by":"a","phase":"swapping","stopped":[],"databases":["api"],"paths":["/srv/x"]}"#;
    let m: Marker = serde_json::from_str(old)?;
    assert_eq!(m.swapped, 0);
    assert_eq!(m.pieces().len(), 2);
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
    let config = crate::config::CurrentConfig::fixed(std::sync::Arc::new(
        crate::config::Config::parse(std::path::Path::new("t.toml"), "")?,
    ));
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
