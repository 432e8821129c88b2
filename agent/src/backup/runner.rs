//! One backup run, synchronous (a blocking thread): open the repository,
//! dump every database, Redis's fresh RDB and the paths, then forget and
//! prune by policy and, when due, check. The first failure ends the run;
//! snapshots already written stay (each is complete on its own).

use std::path::PathBuf;
use std::process::Command;

use hostd_api::{BackupKind, SnapshotInfo};
use rustic_core::RepositoryOptions;

use super::engine::{self, EngineError, Labels};
use super::{RepoError, S3Backend, open_or_init};
use crate::config::KeepPolicy;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Some of the run was backed up; these parts were not.
    #[error("{}", describe(.0))]
    Incomplete(Vec<PartFailure>),
}

/// One part of a run (a database, Redis, the paths) that could not be
/// backed up, and why.
#[derive(Debug)]
pub struct PartFailure {
    pub what: String,
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

fn describe(parts: &[PartFailure]) -> String {
    parts
        .iter()
        .map(|p| {
            format!(
                "{} not backed up: {}",
                p.what,
                hostd_api::error_chain(&*p.error)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How hostd reaches PostgreSQL as its administrator for `pg_dump` and
/// `pg_restore`: socket directory (or host), port and role. No password in
/// arguments: when one is needed it goes in `PGPASSWORD`.
#[derive(Clone)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
}

/// Never the password: a `{:?}` of a plan must be safe to log.
impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl PgTarget {
    pub fn from_conninfo(conninfo: &str) -> Option<Self> {
        let c: postgres::Config = conninfo.parse().ok()?;
        let host = match c.get_hosts().first()? {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.to_string_lossy().into_owned(),
        };
        Some(Self {
            host,
            port: c.get_ports().first().copied().unwrap_or(5432),
            user: c.get_user().unwrap_or("postgres").to_owned(),
            password: c
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        })
    }

    /// `program -h HOST -p PORT -U USER`, environment cleared of libpq's
    /// own variables so nothing on the host redirects it.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.args([
            "-h",
            &self.host,
            "-p",
            &self.port.to_string(),
            "-U",
            &self.user,
        ])
        .env_remove("PGDATABASE")
        .env_remove("PGSERVICE")
        .env("PGCONNECT_TIMEOUT", "10");
        if let Some(p) = &self.password {
            c.env("PGPASSWORD", p);
        }
        c
    }
}

/// Everything one run needs, decided by the async side.
pub struct RunPlan {
    pub storage: S3Backend,
    pub password: String,
    pub options: RepositoryOptions,
    pub labels: Labels,
    pub pg: PgTarget,
    pub databases: Vec<String>,
    /// Redis's RDB file, freshly saved.
    pub redis_rdb: Option<PathBuf>,
    pub paths: Vec<PathBuf>,
    pub keep: KeepPolicy,
    /// Run `check` with this read subset.
    pub check: Option<String>,
}

#[derive(Debug, Default)]
pub struct RunOutput {
    pub snapshots: Vec<SnapshotInfo>,
    pub forgotten: usize,
    pub checked: bool,
}

/// The run; `written` collects snapshots as they are written, so a failed
/// run still reports what it did. A part that fails (one database, Redis,
/// the paths) does not keep the others from being backed up: they are,
/// and the run fails naming it. `failed` holds parts that failed before
/// the run (Redis could not save).
pub fn run(
    plan: RunPlan,
    written: &mut Vec<SnapshotInfo>,
    mut failed: Vec<PartFailure>,
) -> Result<RunOutput, RunError> {
    let repo = open_or_init(plan.storage.clone(), &plan.password, &plan.options)?;
    let indexed = repo.to_indexed_ids().map_err(|e| EngineError::Step {
        step: "reading the repository index".into(),
        detail: e.display_log(),
    })?;
    for db in &plan.databases {
        let mut dump = plan.pg.command("pg_dump");
        // Custom format, uncompressed: the repository compresses (zstd) and
        // deduplicates, which gzip would defeat.
        dump.args(["--format=custom", "--compress=0", "--dbname", db]);
        let snap = engine::backup_command(
            &indexed,
            &plan.labels,
            BackupKind::Postgres,
            Some(db),
            &format!("{db}.dump"),
            &format!("pg_dump of {db}"),
            dump,
        );
        part(snap, &format!("postgres {db}"), written, &mut failed);
    }
    if let Some(rdb) = &plan.redis_rdb {
        let snap = engine::backup_paths(
            &indexed,
            &plan.labels,
            BackupKind::Redis,
            std::slice::from_ref(rdb),
        );
        part(snap, "redis", written, &mut failed);
    }
    if !plan.paths.is_empty() {
        let snap = engine::backup_paths(&indexed, &plan.labels, BackupKind::Files, &plan.paths);
        part(snap, "files", written, &mut failed);
    }
    // Forget and prune only after a whole run: a partial one is no reason
    // to let an older complete snapshot go.
    if !failed.is_empty() {
        return Err(RunError::Incomplete(failed));
    }
    let forgotten = engine::forget_and_prune(&indexed, &plan.keep)?;
    let checked = match &plan.check {
        Some(subset) => {
            engine::check(&indexed, subset)?;
            true
        }
        None => false,
    };
    Ok(RunOutput {
        snapshots: written.clone(),
        forgotten,
        checked,
    })
}

fn part(
    snap: Result<rustic_core::repofile::SnapshotFile, EngineError>,
    what: &str,
    written: &mut Vec<SnapshotInfo>,
    failed: &mut Vec<PartFailure>,
) {
    match snap {
        Ok(snap) => written.extend(engine::info(&snap)),
        Err(e) => {
            tracing::error!("backup of {what} failed: {}", hostd_api::error_chain(&e));
            failed.push(PartFailure {
                what: what.to_owned(),
                error: Box::new(e),
            });
        }
    }
}
