//! The backup task: one owner of the schedule and of the run in progress,
//! so two backups never run at once. A run is daily at `backup.at` (UTC)
//! plus jitter, on `hostctl backup now`, and again 15 minutes after a
//! failure. After a successful run: the restore drill.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hostd_api::time::rfc3339;
use hostd_api::{BackupRun, BackupsList};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::context::Context;
use super::run::{self, RunFailure};
use super::state::{self, BackupState, next_scheduled};
use crate::config::{BackupConfig, Config};
use crate::lifetime::Lifetime;
use crate::ops::{Holder, OpsView};
use crate::secrets::SecretsState;

const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15 * 60);
/// A scheduled backup due while an operation runs (a restore, a deploy)
/// tries again this much later.
const LOCKED_RETRY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backups are not configured on this host (no [backup] section in hostd.toml)")]
    NotConfigured,
    #[error("the backup task has stopped (hostd is shutting down)")]
    Gone,
    #[error(transparent)]
    List(#[from] RunFailure),
}

impl crate::http::Refusal for BackupError {
    fn http_status(&self) -> u16 {
        match self {
            Self::NotConfigured => 404,
            Self::Gone => 503,
            Self::List(_) => 502,
        }
    }
}

enum Request {
    Now {
        wait: bool,
        reply: oneshot::Sender<BackupRun>,
    },
    /// New settings: the next run uses them, a run going finishes with
    /// the old ones. Without `[backup]` the task ends after it.
    Reconfigure {
        config: Arc<Config>,
        ctx: Arc<Context>,
    },
}

/// The task while `[backup]` is configured.
#[derive(Clone, Default)]
struct Live {
    tx: Option<mpsc::Sender<Request>>,
    ctx: Option<Arc<Context>>,
}

/// What starting a task again (a new `[backup]` applied) takes.
struct Spawning {
    state: watch::Sender<BackupState>,
    secrets: watch::Receiver<SecretsState>,
    ops: watch::Receiver<OpsView>,
    lifetime: Lifetime,
}

impl Spawning {
    /// What runs read the repository and the databases through.
    fn context(&self, config: &Arc<Config>) -> Arc<Context> {
        Arc::new(Context::new(
            Arc::clone(config),
            self.secrets.clone(),
            host_of(config),
        ))
    }
}

#[derive(Clone)]
pub struct BackupHandle {
    live: Arc<std::sync::RwLock<Live>>,
    state: watch::Receiver<BackupState>,
    spawning: Arc<Spawning>,
}

impl BackupHandle {
    /// A host without `[backup]`: every call says so.
    pub fn unconfigured() -> Self {
        let (state_tx, state) = watch::channel(BackupState::default());
        Self {
            live: Arc::default(),
            state,
            spawning: Arc::new(Spawning {
                state: state_tx,
                secrets: watch::channel(SecretsState::default()).1,
                ops: watch::channel(OpsView::default()).1,
                lifetime: Lifetime::new(),
            }),
        }
    }

    fn live(&self) -> Live {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_live(&self, live: Live) {
        *self
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = live;
    }

    /// What a restore needs to reach the repository; None without `[backup]`.
    pub fn context(&self) -> Option<Arc<Context>> {
        self.live().ctx
    }

    /// The same channel for the whole life of hostd, whatever applies
    /// change.
    pub fn state(&self) -> watch::Receiver<BackupState> {
        self.state.clone()
    }

    /// A new configuration in force: the task takes its `[backup]` (or
    /// ends without one, or starts with a first one). The schedule moves
    /// only when `at` or `jitter` changed.
    pub async fn reconfigure(&self, config: Arc<Config>) {
        let live = self.live();
        match (live.tx, config.backup.is_some()) {
            (Some(tx), configured) => {
                let ctx = self.spawning.context(&config);
                let _ = tx
                    .send(Request::Reconfigure {
                        config,
                        ctx: Arc::clone(&ctx),
                    })
                    .await;
                self.set_live(if configured {
                    Live {
                        tx: Some(tx),
                        ctx: Some(ctx),
                    }
                } else {
                    Live::default()
                });
            }
            (None, true) => self.set_live(start(&config, &self.spawning)),
            (None, false) => {}
        }
    }

    pub async fn now(&self, wait: bool) -> Result<BackupRun, BackupError> {
        let tx = self.live().tx.ok_or(BackupError::NotConfigured)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Request::Now { wait, reply })
            .await
            .map_err(|_| BackupError::Gone)?;
        rx.await.map_err(|_| BackupError::Gone)
    }

    pub async fn list(&self) -> Result<BackupsList, BackupError> {
        let ctx = self.context().ok_or(BackupError::NotConfigured)?;
        let (repository, snapshots) = run::list(&ctx).await?;
        let st = self.state.borrow().clone();
        Ok(BackupsList {
            repository,
            snapshots,
            last_success: st.last_success,
            last_run: st.last_run,
            last_drill: st.last_drill,
            next_run: st.next_run,
        })
    }
}

/// What the task works with besides its settings.
pub struct Deps {
    /// The repository password is one of the delivered secrets.
    pub secrets: watch::Receiver<SecretsState>,
    /// What the operations task runs: no scheduled run under it.
    pub ops: watch::Receiver<OpsView>,
}

/// The host whose snapshots this one writes and restores: `backup.host`
/// (a replacement instance restoring the lost one), else this host.
pub fn host_of(config: &Config) -> String {
    config
        .backup
        .as_ref()
        .and_then(|b| b.host.as_ref())
        .map_or_else(crate::host::hostname, |h| h.as_str().to_owned())
}

/// Without `[backup]`: a handle that says so and no task, until an apply
/// brings a `[backup]`.
pub fn spawn(config: Arc<Config>, deps: Deps, lifetime: &Lifetime) -> BackupHandle {
    let (state_tx, state) = watch::channel(BackupState::default());
    let spawning = Arc::new(Spawning {
        state: state_tx,
        secrets: deps.secrets,
        ops: deps.ops,
        lifetime: lifetime.clone(),
    });
    let live = start(&config, &spawning);
    BackupHandle {
        live: Arc::new(std::sync::RwLock::new(live)),
        state,
        spawning,
    }
}

/// The schedule's task for `config`'s `[backup]`; nothing without one.
fn start(config: &Arc<Config>, spawning: &Spawning) -> Live {
    let Some(backup) = config.backup.clone() else {
        return Live::default();
    };
    let mut initial = state::state_file(config).load_or_log().unwrap_or_default();
    if initial.configured_since.is_none() {
        initial.configured_since = Some(rfc3339(SystemTime::now()));
        state::save(config, &initial);
    }
    spawning.state.send_replace(initial);
    let ctx = spawning.context(config);
    let (tx, rx) = mpsc::channel::<Request>(8);
    let task = Task {
        config: Arc::clone(config),
        backup,
        ctx: Arc::clone(&ctx),
        state: spawning.state.clone(),
        ops: spawning.ops.clone(),
        lifetime: spawning.lifetime.clone(),
        running: None,
    };
    spawning.lifetime.spawn("backup schedule", task.run(rx));
    Live {
        tx: Some(tx),
        ctx: Some(ctx),
    }
}

/// A run going, and who waits for its end.
type Running = (JoinHandle<BackupState>, Vec<oneshot::Sender<BackupRun>>);

struct Task {
    config: Arc<Config>,
    backup: BackupConfig,
    ctx: Arc<Context>,
    state: watch::Sender<BackupState>,
    ops: watch::Receiver<OpsView>,
    lifetime: Lifetime,
    running: Option<Running>,
}

impl Task {
    fn schedule(&self) -> SystemTime {
        next_scheduled(SystemTime::now(), self.backup.at.0, self.backup.jitter.0)
    }

    fn holder(&self) -> Option<Holder> {
        self.ops.borrow().holder.clone()
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut next = self.schedule();
        let lifetime = self.lifetime.clone();
        loop {
            self.state.send_modify(|s| {
                s.running = self.running.is_some();
                s.next_run = Some(rfc3339(next));
            });
            let until = tokio::time::Instant::now()
                + next.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep_until(until), if self.running.is_none() => {
                    // Not while a restore replaces the data under it.
                    if let Some(holder) = self.holder() {
                        tracing::info!("scheduled backup postponed: {holder}");
                        next = SystemTime::now() + LOCKED_RETRY;
                    } else {
                        self.start("schedule");
                    }
                }
                done = async { (&mut self.running.as_mut()?.0).await.ok() }, if self.running.is_some() => {
                    next = self.finished(done);
                }
                req = rx.recv() => match req {
                    Some(Request::Now { wait, reply }) => self.now(wait, reply),
                    Some(Request::Reconfigure { config, ctx }) => {
                        let Some(backup) = config.backup.clone() else {
                            tracing::info!("[backup] removed: no more scheduled backups");
                            break;
                        };
                        let moved = (backup.at.0, backup.jitter.0) != (self.backup.at.0, self.backup.jitter.0);
                        (self.config, self.backup, self.ctx) = (config, backup, ctx);
                        if moved {
                            next = self.schedule();
                        }
                    }
                    None => break,
                },
                () = lifetime.ending() => break,
            }
        }
        // A run in progress is abandoned: rustic writes nothing a reader
        // trusts until the snapshot file, so the repository stays valid.
        if let Some((run, _)) = self.running.take() {
            run.abort();
        }
    }

    fn now(&mut self, wait: bool, reply: oneshot::Sender<BackupRun>) {
        if let (None, Some(holder)) = (&self.running, self.holder()) {
            let _ = reply.send(refused(&holder));
            return;
        }
        if self.running.is_none() {
            self.start("manual");
        }
        let current = self.state.borrow().last_run.clone();
        match (wait, self.running.as_mut(), current) {
            (true, Some((_, waiters)), _) => waiters.push(reply),
            (_, _, Some(run)) => {
                let _ = reply.send(run);
            }
            _ => {}
        }
    }

    /// Records the run that ended; returns when the next one is due.
    fn finished(&mut self, done: Option<BackupState>) -> SystemTime {
        let waiters = self.running.take().map(|(_, w)| w).unwrap_or_default();
        let st = done.unwrap_or_else(|| self.state.borrow().clone());
        state::save(&self.config, &st);
        let ok = st.last_run.as_ref().and_then(|r| r.ok) == Some(true);
        if let Some(run) = &st.last_run {
            for w in waiters {
                let _ = w.send(run.clone());
            }
        }
        self.state.send_replace(st);
        if ok {
            self.schedule()
        } else {
            SystemTime::now() + RETRY_AFTER_FAILURE
        }
    }

    /// Marks a run as started and runs it (backup, then drill) in a task
    /// that returns the new state.
    fn start(&mut self, trigger: &str) {
        let started = BackupRun {
            trigger: trigger.to_owned(),
            started: rfc3339(SystemTime::now()),
            finished: None,
            ok: None,
            error: None,
            incomplete: Vec::new(),
            snapshots: Vec::new(),
        };
        self.state.send_modify(|s| {
            s.last_run = Some(started.clone());
            s.running = true;
        });
        let (ctx, mut st) = (Arc::clone(&self.ctx), self.state.borrow().clone());
        let run = self.lifetime.spawn("backup run", async move {
            run::backup_and_drill(&ctx, started, &mut st).await;
            st
        });
        self.running = Some((run, Vec::new()));
    }
}

/// `backup now` while a restore runs: a run that never started, saying why.
fn refused(holder: &Holder) -> BackupRun {
    let now = rfc3339(SystemTime::now());
    BackupRun {
        trigger: "manual".into(),
        started: now.clone(),
        finished: Some(now),
        ok: Some(false),
        error: Some(format!(
            "not started: the host's operations lock is held ({holder}); try again after it"
        )),
        incomplete: Vec::new(),
        snapshots: Vec::new(),
    }
}
