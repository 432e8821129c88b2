//! The async side of one run: gather what the synchronous runner needs
//! (password, S3 client, a fresh Redis RDB, the live release), run it and
//! the drill on blocking threads, and record the outcome.

use std::path::PathBuf;
use std::time::SystemTime;

use hostd_api::time::now_rfc3339;
use hostd_api::{BackupRun, DrillRun, SnapshotInfo};

use super::context::{AccessError, Context};
use super::drill::{DrillError, DrillPlan, drill};
use super::engine::{EngineError, Labels};
use super::redis_save::RedisSaveError;
use super::runner::{PartFailure, PgTarget, RunError, RunPlan, run};
use super::state::BackupState;
use super::{RepoError, open_or_init};

/// Where the API's live release is; its link target names the release.
const CURRENT_RELEASE: &str = "/srv/api/current";

#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Runner(#[from] RunError),
    #[error(transparent)]
    Redis(#[from] RedisSaveError),
    #[error(transparent)]
    Drill(#[from] DrillError),
    #[error("checks.postgres is not a connection string")]
    NotConninfo,
    #[error("the backup thread failed")]
    Worker(#[from] tokio::task::JoinError),
}

/// `s3://bucket/prefix` and every snapshot in it.
pub async fn list(ctx: &Context) -> Result<(String, Vec<SnapshotInfo>), RunFailure> {
    let (storage, password, options) = ctx.repository().await?;
    let url = storage.url();
    let snapshots = tokio::task::spawn_blocking(move || {
        let repo = open_or_init(storage, &password, &options)?;
        Ok::<_, RunFailure>(super::engine::snapshots(&repo)?)
    })
    .await??;
    Ok((url, snapshots))
}

/// One run and, when it succeeded and drills are on, the drill; `st` is
/// updated with both.
pub async fn backup_and_drill(ctx: &Context, mut record: BackupRun, st: &mut BackupState) {
    let mut written = Vec::new();
    let check_due = ctx.backup().is_ok_and(|b| {
        st.last_check
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_none_or(|age| age >= b.check_interval.0)
    });
    let result = backup(ctx, &mut written, check_due, &record.started).await;
    record.finished = Some(now_rfc3339());
    record.snapshots = written;
    match result {
        Ok(()) => {
            record.ok = Some(true);
            st.last_success = record.finished.clone();
            if check_due {
                st.last_check = record.finished.clone();
            }
            tracing::info!(snapshots = record.snapshots.len(), "backup finished");
        }
        Err(e) => {
            if let RunFailure::Runner(RunError::Incomplete(parts)) = &e {
                record.incomplete = parts.iter().map(|p| p.what.clone()).collect();
            }
            let e = hostd_api::error_chain(&e);
            tracing::error!("backup failed: {e}");
            record.ok = Some(false);
            record.error = Some(e);
        }
    }
    let ok = record.ok == Some(true);
    st.last_run = Some(record);
    if ok && ctx.backup().is_ok_and(|b| b.drill) {
        let d = run_drill(ctx).await;
        if d.ok {
            st.last_drill_success = Some(d.finished.clone());
        }
        st.last_drill = Some(d);
    }
}

async fn backup(
    ctx: &Context,
    written: &mut Vec<SnapshotInfo>,
    check_due: bool,
    started: &str,
) -> Result<(), RunFailure> {
    let b = ctx.backup()?.clone();
    let (storage, password, options) = ctx.repository().await?;
    // Redis that cannot save fails its part of the run, not the others.
    let mut failed = Vec::new();
    let redis_rdb = if b.redis {
        let password = ctx.redis_password();
        let rdb = b.redis_rdb.0.clone();
        match super::redis_save::fresh_rdb(ctx.redis_address(), password.as_ref(), &rdb).await {
            Ok(()) => Some(rdb),
            Err(error) => {
                failed.push(PartFailure {
                    what: "redis".into(),
                    error: Box::new(error),
                });
                None
            }
        }
    } else {
        None
    };
    let release = std::fs::read_link(CURRENT_RELEASE)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let pg = PgTarget::from_conninfo(ctx.admin()).ok_or(RunFailure::NotConninfo)?;
    let plan = RunPlan {
        storage,
        password,
        options,
        labels: Labels {
            host: ctx.hostname().to_owned(),
            release,
            run: started.to_owned(),
        },
        pg,
        databases: ctx.databases(),
        redis_rdb,
        paths: b
            .paths
            .iter()
            .map(|p| p.0.clone())
            .collect::<Vec<PathBuf>>(),
        keep: b.keep,
        check: check_due.then(|| b.check_read_subset.clone()),
    };
    // Not tracked for shutdown: a run cut short writes nothing a reader
    // trusts (rustic saves the snapshot file last), so hostd does not wait
    // for it.
    let (result, snaps) = tokio::task::spawn_blocking(move || {
        let mut snaps = Vec::new();
        let r = run(plan, &mut snaps, failed);
        (r, snaps)
    })
    .await?;
    *written = snaps;
    let out = result?;
    tracing::info!(
        forgotten = out.forgotten,
        checked = out.checked,
        "backup maintenance done"
    );
    Ok(())
}

async fn run_drill(ctx: &Context) -> DrillRun {
    let started = now_rfc3339();
    let databases = ctx.databases();
    let database = databases.join(",");
    let result = drill_once(ctx, databases).await;
    match result {
        Ok(out) => {
            tracing::info!(checks = out.checks_passed, "restore drill passed");
            DrillRun {
                started,
                finished: now_rfc3339(),
                ok: true,
                snapshot: out.snapshot,
                database,
                checks_passed: out.checks_passed,
                error: None,
            }
        }
        Err(e) => {
            let e = hostd_api::error_chain(&e);
            tracing::error!("restore drill failed: {e}");
            DrillRun {
                started,
                finished: now_rfc3339(),
                ok: false,
                snapshot: None,
                database,
                checks_passed: 0,
                error: Some(e),
            }
        }
    }
}

async fn drill_once(
    ctx: &Context,
    databases: Vec<String>,
) -> Result<super::drill::DrillOutput, RunFailure> {
    let (storage, password, options) = ctx.repository().await?;
    let pg = PgTarget::from_conninfo(ctx.admin()).ok_or(RunFailure::NotConninfo)?;
    let plan = DrillPlan {
        storage,
        password,
        options,
        host: ctx.hostname().to_owned(),
        pg,
        admin: ctx.admin().to_owned(),
        databases,
        queries: ctx
            .backup()
            .map(|b| b.drill_queries.clone())
            .unwrap_or_default(),
    };
    Ok(tokio::task::spawn_blocking(move || drill(&plan)).await??)
}
