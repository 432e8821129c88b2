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
}

#[derive(Clone)]
pub struct BackupHandle {
    tx: Option<mpsc::Sender<Request>>,
    state: watch::Receiver<BackupState>,
    ctx: Option<Arc<Context>>,
}

impl BackupHandle {
    /// A host without `[backup]`: every call says so.
    pub fn unconfigured() -> Self {
        Self {
            tx: None,
            state: watch::channel(BackupState::default()).1,
            ctx: None,
        }
    }

    /// What a restore needs to reach the repository; None without `[backup]`.
    pub fn context(&self) -> Option<Arc<Context>> {
        self.ctx.clone()
    }

    pub fn state(&self) -> watch::Receiver<BackupState> {
        self.state.clone()
    }

    pub async fn now(&self, wait: bool) -> Result<BackupRun, BackupError> {
        let tx = self.tx.as_ref().ok_or(BackupError::NotConfigured)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Request::Now { wait, reply })
            .await
            .map_err(|_| BackupError::Gone)?;
        rx.await.map_err(|_| BackupError::Gone)
    }

    pub async fn list(&self) -> Result<BackupsList, BackupError> {
        let ctx = self.ctx.as_ref().ok_or(BackupError::NotConfigured)?;
        let (repository, snapshots) = run::list(ctx).await?;
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
    /// The host whose snapshots these are (`backup.host`, else this one).
    pub hostname: String,
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

/// Without `[backup]`: an unconfigured handle and no task.
pub fn spawn(config: Arc<Config>, deps: Deps, lifetime: &Lifetime) -> BackupHandle {
    let Some(backup) = config.backup.clone() else {
        return BackupHandle::unconfigured();
    };
    let mut initial = state::state_file(&config).load_or_log().unwrap_or_default();
    if initial.configured_since.is_none() {
        initial.configured_since = Some(rfc3339(SystemTime::now()));
        state::save(&config, &initial);
    }
    let ctx = Arc::new(Context::new(
        Arc::clone(&config),
        deps.secrets,
        deps.hostname,
    ));
    let (state_tx, state) = watch::channel(initial);
    let (tx, rx) = mpsc::channel::<Request>(8);
    let task = Task {
        config,
        backup,
        ctx: Arc::clone(&ctx),
        state: state_tx,
        ops: deps.ops,
        lifetime: lifetime.clone(),
        running: None,
    };
    lifetime.spawn("backup schedule", task.run(rx));
    BackupHandle {
        tx: Some(tx),
        state,
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
