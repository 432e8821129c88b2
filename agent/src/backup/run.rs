//! The async side of one run: gather what the synchronous runner needs
//! (password, S3 client, a fresh Redis RDB, the live release), run it and
//! the drill on blocking threads, and record the outcome.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use hostd_api::time::now_rfc3339;
use hostd_api::{BackupRun, DrillRun, SnapshotInfo};
use rustic_core::RepositoryOptions;
use tokio::sync::{OnceCell, watch};

use super::drill::{DrillPlan, drill};
use super::engine::Labels;
use super::runner::{PgTarget, RunPlan, run};
use super::task::BackupState;
use super::{S3Backend, open_or_init};
use crate::aws::Target;
use crate::config::{BackupConfig, Config};
use crate::secrets::SecretsState;

/// Where the API's live release is; its link target names the release.
const CURRENT_RELEASE: &str = "/srv/api/current";

pub struct Context {
    config: Arc<Config>,
    secrets: watch::Receiver<SecretsState>,
    hostname: String,
    client: OnceCell<aws_sdk_s3::Client>,
}

impl Context {
    pub fn new(
        config: Arc<Config>,
        secrets: watch::Receiver<SecretsState>,
        hostname: String,
    ) -> Self {
        Self {
            config,
            secrets,
            hostname,
            client: OnceCell::new(),
        }
    }

    pub(crate) fn hostname(&self) -> &str {
        &self.hostname
    }

    pub(crate) fn redis_password(&self) -> Option<crate::secrets::SecretValue> {
        self.secrets.borrow().wired.redis_password.clone()
    }

    pub(crate) fn backup(&self) -> Result<&BackupConfig, String> {
        self.config
            .backup
            .as_ref()
            .ok_or_else(|| "no [backup] section".to_owned())
    }

    /// The repository's storage and password.
    pub(crate) async fn repository(
        &self,
    ) -> Result<(S3Backend, String, RepositoryOptions), String> {
        let b = self.backup()?;
        let password = self
            .secrets
            .borrow()
            .wired
            .backup_password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .ok_or("the repository password (secrets.backup_password) is not available")?;
        let client = self
            .client
            .get_or_try_init(|| async {
                super::client(Target {
                    region: b.region.as_ref().map(|r| r.as_str()),
                    endpoint_url: b.endpoint_url.as_ref().map(|u| u.as_str()),
                })
                .await
            })
            .await
            .map_err(|e| e.to_string())?
            .clone();
        let prefix = b.prefix_for(&self.hostname);
        let storage = S3Backend::new(
            client,
            tokio::runtime::Handle::current(),
            b.bucket.as_str(),
            &prefix,
        )
        .map_err(|e| e.to_string())?;
        let options = RepositoryOptions::default().cache_dir(b.cache_dir.0.clone());
        Ok((storage, password, options))
    }

    pub(crate) fn databases(&self) -> Vec<String> {
        match self.backup().ok().and_then(|b| b.databases.clone()) {
            Some(list) => list,
            None => self
                .config
                .services
                .values()
                .filter_map(|s| s.database.clone())
                .collect(),
        }
    }

    pub(crate) fn admin(&self) -> &str {
        self.config.postgres_admin()
    }
}

/// `s3://bucket/prefix` and every snapshot in it.
pub async fn list(ctx: &Context) -> Result<(String, Vec<SnapshotInfo>), String> {
    let (storage, password, options) = ctx.repository().await?;
    let url = storage.url();
    let snapshots = tokio::task::spawn_blocking(move || {
        let repo =
            open_or_init(storage, &password, &options).map_err(|e| hostd_api::error_chain(&e))?;
        super::engine::snapshots(&repo).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
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
) -> Result<(), String> {
    let b = ctx.backup()?.clone();
    let (storage, password, options) = ctx.repository().await?;
    let redis_rdb = if b.redis {
        let password = ctx.redis_password();
        Some(
            super::redis_save::fresh_rdb(ctx.config.redis_address(), password.as_ref())
                .await
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let release = std::fs::read_link(CURRENT_RELEASE)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let pg =
        PgTarget::from_conninfo(ctx.admin()).ok_or("checks.postgres is not a connection string")?;
    let plan = RunPlan {
        storage,
        password,
        options,
        labels: Labels {
            host: ctx.hostname.clone(),
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
    let (result, snaps) = tokio::task::spawn_blocking(move || {
        let mut snaps = Vec::new();
        let r = run(plan, &mut snaps);
        (r, snaps)
    })
    .await
    .map_err(|e| format!("the backup thread failed: {e}"))?;
    *written = snaps;
    let out = result.map_err(|e| hostd_api::error_chain(&e))?;
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
    let plan = match ctx.repository().await {
        Ok((storage, password, options)) => PgTarget::from_conninfo(ctx.admin())
            .map(|pg| DrillPlan {
                storage,
                password,
                options,
                host: ctx.hostname.clone(),
                pg,
                admin: ctx.admin().to_owned(),
                databases,
                queries: ctx
                    .backup()
                    .map(|b| b.drill_queries.clone())
                    .unwrap_or_default(),
            })
            .ok_or_else(|| "checks.postgres is not a connection string".to_owned()),
        Err(e) => Err(e),
    };
    let result = match plan {
        Ok(plan) => tokio::task::spawn_blocking(move || drill(&plan).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r),
        Err(e) => Err(e),
    };
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
