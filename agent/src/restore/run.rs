//! Running a prepared restore, reporting each step as a [`RestoreEvent`]
//! (and in the journal). See the module above for the order and why.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hostd_api::time::now_rfc3339;
use hostd_api::{BackupKind, RestoreEvent, RestorePlan, RestoreRequest, ServiceAction};
use tokio::sync::mpsc;

use super::marker::{self, Marker, Phase};
use super::{Prepared, Restorer, paths, pg};
use crate::backup::runner::PgTarget;
use crate::oplock::OpsGuard;

/// A backup run in progress is waited for at most this long.
const BACKUP_WAIT: Duration = Duration::from_secs(6 * 60 * 60);

/// The stream of one restore. Sending never blocks and never fails the
/// restore: a client that went away just stops hearing about it.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::UnboundedSender<RestoreEvent>,
    started: Instant,
}

impl Events {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<RestoreEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let started = Instant::now();
        (Self { tx, started }, rx)
    }

    fn send(&self, e: RestoreEvent) {
        let _ = self.tx.send(e);
    }

    pub fn plan(&self, plan: &RestorePlan, dry_run: bool) {
        self.send(RestoreEvent::Plan {
            plan: plan.clone(),
            dry_run,
        });
    }

    fn waiting(&self, holder: String) {
        tracing::info!("restore waiting for {holder}");
        self.send(RestoreEvent::Waiting { holder });
    }

    fn step(&self, step: &str) -> Instant {
        tracing::info!("restore: {step}");
        self.send(RestoreEvent::Step { step: step.into() });
        Instant::now()
    }

    fn done(&self, step: &str, since: Instant) {
        self.send(RestoreEvent::StepDone {
            step: step.into(),
            seconds: since.elapsed().as_secs_f64(),
        });
    }

    fn progress(&self, step: &str, total: Option<u64>) -> impl FnMut(u64) + Send + 'static {
        let (tx, step) = (self.tx.clone(), step.to_owned());
        move |bytes| {
            let _ = tx.send(RestoreEvent::Progress {
                step: step.clone(),
                bytes,
                total,
            });
        }
    }

    pub fn finished(&self, result: Result<(), String>) {
        let seconds = self.started.elapsed().as_secs_f64();
        match &result {
            Ok(()) => tracing::info!(seconds, "restore finished"),
            Err(e) => tracing::error!(seconds, "restore failed: {e}"),
        }
        self.send(RestoreEvent::Finished {
            ok: result.is_ok(),
            seconds,
            error: result.err(),
        });
    }
}

/// Runs `p` to the end and sends `finished`. `guard`: the operations lock
/// when the caller already took it; otherwise it is waited for here.
pub async fn execute(
    r: Restorer,
    p: Prepared,
    req: RestoreRequest,
    guard: Option<OpsGuard>,
    ev: Events,
) {
    match go(&r, p, &req, guard, &ev).await {
        Ok(done) => {
            // The restore is over for the operator once the API serves the
            // restored data; dropping the old copies (seconds for a large
            // database) happens after, still under the lock.
            ev.finished(Ok(()));
            done.drop_previous().await;
        }
        Err(e) => ev.finished(Err(e)),
    }
}

/// What a successful restore still holds: the lock, and the previous
/// copies to drop.
struct Done {
    _guard: OpsGuard,
    admin: String,
    databases: Vec<String>,
    live_paths: Vec<PathBuf>,
}

impl Done {
    async fn drop_previous(self) {
        let Done {
            _guard,
            admin,
            databases,
            live_paths,
        } = self;
        let dropped = blocking(move || {
            drop_copies(Copies::Previous, &admin, &databases, &live_paths);
            Ok(())
        })
        .await;
        match dropped {
            Ok(()) => tracing::info!("restore: previous copies dropped"),
            Err(e) => tracing::warn!("after the restore: {e}"),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| "the restore thread failed".to_owned())?
}

async fn go(
    r: &Restorer,
    p: Prepared,
    req: &RestoreRequest,
    guard: Option<OpsGuard>,
    ev: &Events,
) -> Result<Done, String> {
    let guard = match guard {
        Some(g) => g,
        None => {
            let holder = super::holder(req);
            ev.waiting(r.lock.holder().map_or_else(String::new, |h| h.to_string()));
            let wait = Duration::from_secs(req.lock_wait_seconds);
            r.lock.take(holder, wait).await.map_err(|e| e.to_string())?
        }
    };
    let mut backups = r.backup_state();
    if backups.borrow().running {
        ev.waiting("the backup run in progress".into());
        let finished = tokio::time::timeout(BACKUP_WAIT, backups.wait_for(|s| !s.running)).await;
        if !matches!(finished, Ok(Ok(_))) {
            return Err("the backup run in progress did not finish; nothing changed".into());
        }
    }

    let Prepared {
        plan,
        ctx,
        repo,
        snapshots,
        redis_rdb,
        databases,
        files,
    } = p;
    let admin = ctx.admin().to_owned();
    let mut live_paths = files.clone();
    live_paths.extend(redis_rdb.clone());
    let state_dir = r.config.state_dir.clone();
    let mut m = Marker {
        started: now_rfc3339(),
        requested_by: req.requested_by.clone(),
        phase: Phase::Staging,
        stopped: plan.stop.clone(),
        databases: databases.clone(),
        paths: live_paths.clone(),
    };
    marker::file(&state_dir)
        .save(&m)
        .map_err(|e| format!("cannot record the restore: {e}"))?;

    let mut stopped = Vec::new();
    for s in &plan.stop {
        let step = format!("stop {s}");
        let t = ev.step(&step);
        if let Err(e) = r.manager.action(s.clone(), ServiceAction::Stop).await {
            start_again(r, &stopped).await;
            marker::file(&state_dir).clear();
            return Err(format!("cannot stop {s}: {e}; nothing changed"));
        }
        stopped.push(s.clone());
        ev.done(&step, t);
    }

    // Everything into staging copies; the live data is untouched.
    let pg = PgTarget::from_conninfo(&admin)
        .ok_or_else(|| "checks.postgres is not a connection string".to_owned());
    let staged = {
        let (ev, admin, plan_snaps) = (ev.clone(), admin.clone(), plan.snapshots.clone());
        let rdb = redis_rdb.clone();
        blocking(move || {
            let pg = pg?;
            for info in &plan_snaps {
                let snap = snapshots
                    .iter()
                    .find(|s| s.id.to_hex().to_string() == info.id)
                    .ok_or_else(|| format!("snapshot {} vanished", info.id))?;
                match (info.kind, &info.database) {
                    (BackupKind::Postgres, Some(db)) => {
                        let step = format!("restore postgres {db}");
                        let node = repo
                            .node_from_snapshot_and_path(snap, &format!("{db}.dump"))
                            .map_err(|e| format!("finding {db}.dump: {}", e.display_log()))?;
                        let t = ev.step(&step);
                        let progress = ev.progress(&step, Some(node.meta.size));
                        pg::stage(&repo, &node, &pg, &admin, db, progress)
                            .map_err(|e| e.to_string())?;
                        ev.done(&step, t);
                    }
                    (BackupKind::Redis, _) => {
                        let (Some(source), Some(dest)) = (info.paths.first(), rdb.as_ref()) else {
                            continue;
                        };
                        let t = ev.step("restore redis");
                        paths::stage(&repo, snap, std::path::Path::new(source), dest)
                            .map_err(|e| e.to_string())?;
                        ev.done("restore redis", t);
                    }
                    (BackupKind::Files, _) => {
                        for path in &info.paths {
                            let step = format!("restore {path}");
                            let t = ev.step(&step);
                            paths::stage(
                                &repo,
                                snap,
                                std::path::Path::new(path),
                                std::path::Path::new(path),
                            )
                            .map_err(|e| e.to_string())?;
                            ev.done(&step, t);
                        }
                    }
                    (BackupKind::Postgres, None) => {}
                }
            }
            Ok(())
        })
        .await
    };
    if let Err(e) = staged {
        let (admin, dbs, ps) = (admin.clone(), databases.clone(), live_paths.clone());
        let _ = blocking(move || {
            drop_copies(Copies::Staged, &admin, &dbs, &ps);
            Ok(())
        })
        .await;
        start_again(r, &stopped).await;
        marker::file(&state_dir).clear();
        return Err(format!("{e}; nothing changed: the live data is as it was"));
    }

    m.phase = Phase::Swapping;
    let _ = marker::file(&state_dir).save(&m);
    let t = ev.step("swap");
    if let Err(e) = swap(r, &ctx, &admin, &databases, redis_rdb.as_ref(), &files).await {
        start_again(r, &stopped).await;
        marker::file(&state_dir).clear();
        return Err(format!(
            "swapping the restored data in failed: {e}; what was swapped keeps its previous copy \
             (hostd_pre_restore_* databases, *.hostd-pre-restore paths)"
        ));
    }
    ev.done("swap", t);

    m.phase = Phase::Starting;
    let _ = marker::file(&state_dir).save(&m);
    for s in &stopped {
        let step = format!("start {s}");
        let t = ev.step(&step);
        if let Err(e) = r.manager.action(s.clone(), ServiceAction::Start).await {
            marker::file(&state_dir).clear();
            return Err(format!(
                "the data is restored, but {s} did not start healthy: {e}. The data from before \
                 the restore is kept (hostd_pre_restore_* databases, *.hostd-pre-restore paths)"
            ));
        }
        ev.done(&step, t);
    }
    marker::file(&state_dir).clear();

    Ok(Done {
        _guard: guard,
        admin,
        databases,
        live_paths,
    })
}

/// Staging copies (never live) removed, after a failure or an interruption.
#[derive(Debug, Clone, Copy)]
pub(super) enum Copies {
    /// Restored beside the live data, never live: after a failure or an
    /// interruption.
    Staged,
    /// The live data from before the swap: after a successful restore.
    Previous,
}

/// Removes one kind of copy of each database and path; a failure is
/// logged and the rest still go.
pub(super) fn drop_copies(
    which: Copies,
    admin: &str,
    databases: &[String],
    live_paths: &[PathBuf],
) {
    type DropDb = fn(&str, &str) -> Result<(), pg::PgRestoreError>;
    type DropPath = fn(&std::path::Path) -> Result<(), paths::PathsError>;
    let (drop_db, drop_path, what): (DropDb, DropPath, &str) = match which {
        Copies::Staged => (
            pg::drop_staging,
            paths::drop_staged,
            "removing what the restore staged",
        ),
        Copies::Previous => (pg::drop_previous, paths::drop_previous, "after the restore"),
    };
    for db in databases {
        if let Err(e) = drop_db(admin, db) {
            tracing::error!("{what}: {e}");
        }
    }
    for p in live_paths {
        if let Err(e) = drop_path(p) {
            tracing::error!("{what}: {e}");
        }
    }
}

async fn swap(
    r: &Restorer,
    ctx: &crate::backup::Context,
    admin: &str,
    databases: &[String],
    redis_rdb: Option<&PathBuf>,
    files: &[PathBuf],
) -> Result<(), String> {
    for db in databases {
        let (admin, db) = (admin.to_owned(), db.clone());
        blocking(move || pg::swap(&admin, &db).map_err(|e| e.to_string())).await?;
    }
    if let Some(rdb) = redis_rdb {
        let service = ctx
            .backup()
            .map(|b| b.redis_service.clone())
            .map_err(|e| e.to_string())?;
        // Stopped first: Redis saves on shutdown, over whatever is in place.
        r.manager
            .action(service.clone(), ServiceAction::Stop)
            .await
            .map_err(|e| format!("stopping {service}: {e}"))?;
        let moved = paths::swap(rdb).map_err(|e| e.to_string());
        let started = r
            .manager
            .action(service.clone(), ServiceAction::Start)
            .await
            .map_err(|e| format!("starting {service}: {e}"));
        moved?;
        started?;
    }
    for f in files {
        paths::swap(f).map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn start_again(r: &Restorer, services: &[String]) {
    for s in services {
        if let Err(e) = r.manager.action(s.clone(), ServiceAction::Start).await {
            tracing::error!(
                service = s,
                "cannot start again after the failed restore: {e}"
            );
        }
    }
}
