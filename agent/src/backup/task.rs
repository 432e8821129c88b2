//! The backup task: one owner of the schedule and of the run in progress,
//! so two backups never run at once. A run is daily at `backup.at` (UTC)
//! plus jitter, on `hostctl backup now`, and again 15 minutes after a
//! failure. After a successful run: the restore drill. What happened is
//! kept in `<state_dir>/backup.json` so /health tells the truth after a
//! restart.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hostd_api::time::rfc3339;
use hostd_api::{BackupRun, BackupsList, DrillRun};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::run::{self, Context};
use crate::config::Config;
use crate::secrets::SecretsState;
use crate::state_file::JsonFile;

const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15 * 60);
/// A scheduled backup due while the operations lock is held (a restore)
/// tries again this much later.
const LOCKED_RETRY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backups are not configured on this host (no [backup] section in hostd.toml)")]
    NotConfigured,
    #[error("the backup task has stopped (hostd is shutting down)")]
    Gone,
    #[error("{0}")]
    List(String),
}

impl BackupError {
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotConfigured => 404,
            Self::Gone => 503,
            Self::List(_) => 502,
        }
    }
}

/// What /health, /metrics and `hostctl backups` read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupState {
    /// RFC 3339: when hostd first ran with `[backup]` (a host that never
    /// backed up is overdue `max_age` after it).
    pub configured_since: Option<String>,
    pub last_run: Option<BackupRun>,
    pub last_success: Option<String>,
    pub last_drill: Option<DrillRun>,
    pub last_drill_success: Option<String>,
    pub last_check: Option<String>,
    #[serde(skip)]
    pub running: bool,
    #[serde(skip)]
    pub next_run: Option<String>,
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
        let (repository, snapshots) = run::list(ctx).await.map_err(BackupError::List)?;
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

/// `<state_dir>/backup.json`: what /health says after a restart.
fn state_file(config: &Config) -> JsonFile<BackupState> {
    JsonFile::new(config.state_dir.join("backup.json"), "backup state")
}

fn save(config: &Config, st: &BackupState) {
    if let Err(e) = state_file(config).save(st) {
        tracing::warn!("{}", hostd_api::error_chain(&e));
    }
}

/// The next `at` (minutes after midnight UTC) after `now`, plus `jitter`.
pub fn next_scheduled(now: SystemTime, at_minutes: u32, jitter: Duration) -> SystemTime {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let day = secs - secs % 86_400;
    let mut due = day + u64::from(at_minutes) * 60;
    if due <= secs {
        due += 86_400;
    }
    SystemTime::UNIX_EPOCH + Duration::from_secs(due) + crate::random_delay(jitter)
}

pub fn spawn(
    config: Arc<Config>,
    secrets: watch::Receiver<SecretsState>,
    hostname: String,
    lock: crate::oplock::OpsLock,
    mut shutdown: watch::Receiver<bool>,
) -> (BackupHandle, Option<JoinHandle<()>>) {
    let mut initial = state_file(&config).load_or_log().unwrap_or_default();
    let Some(backup) = config.backup.clone() else {
        return (BackupHandle::unconfigured(), None);
    };
    if initial.configured_since.is_none() {
        initial.configured_since = Some(rfc3339(SystemTime::now()));
        save(&config, &initial);
    }
    let ctx = Arc::new(Context::new(Arc::clone(&config), secrets, hostname));
    let (state_tx, state) = watch::channel(initial);
    let (tx, mut rx) = mpsc::channel::<Request>(8);
    let handle = BackupHandle {
        tx: Some(tx),
        state,
        ctx: Some(Arc::clone(&ctx)),
    };
    let schedule = move || next_scheduled(SystemTime::now(), backup.at.0, backup.jitter.0);
    let task = tokio::spawn(async move {
        let mut next = schedule();
        let mut running: Option<(JoinHandle<BackupState>, Vec<oneshot::Sender<BackupRun>>)> = None;
        loop {
            state_tx.send_modify(|s| {
                s.running = running.is_some();
                s.next_run = Some(rfc3339(next));
            });
            let until = tokio::time::Instant::now()
                + next.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep_until(until), if running.is_none() => {
                    // Not while a restore replaces the data under it.
                    if let Some(holder) = lock.holder() {
                        tracing::info!("scheduled backup postponed: {holder}");
                        next = SystemTime::now() + LOCKED_RETRY;
                    } else {
                        running = Some((start(&ctx, &state_tx, "schedule"), Vec::new()));
                    }
                }
                done = async { (&mut running.as_mut()?.0).await.ok() }, if running.is_some() => {
                    let waiters = running.take().map(|(_, w)| w).unwrap_or_default();
                    let st = done.unwrap_or_else(|| state_tx.borrow().clone());
                    save(&config, &st);
                    let ok = st.last_run.as_ref().and_then(|r| r.ok) == Some(true);
                    next = if ok { schedule() } else { SystemTime::now() + RETRY_AFTER_FAILURE };
                    if let Some(run) = &st.last_run {
                        for w in waiters {
                            let _ = w.send(run.clone());
                        }
                    }
                    state_tx.send_replace(st);
                }
                req = rx.recv() => match req {
                    Some(Request::Now { wait, reply }) => {
                        if let (None, Some(holder)) = (&running, lock.holder()) {
                            let _ = reply.send(refused(&holder));
                            continue;
                        }
                        if running.is_none() {
                            running = Some((start(&ctx, &state_tx, "manual"), Vec::new()));
                        }
                        let current = state_tx.borrow().last_run.clone();
                        match (wait, running.as_mut(), current) {
                            (true, Some((_, waiters)), _) => waiters.push(reply),
                            (_, _, Some(run)) => { let _ = reply.send(run); }
                            _ => {}
                        }
                    }
                    None => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    });
    (handle, Some(task))
}

/// `backup now` while a restore runs: a run that never started, saying why.
fn refused(holder: &crate::oplock::Holder) -> BackupRun {
    let now = rfc3339(SystemTime::now());
    BackupRun {
        trigger: "manual".into(),
        started: now.clone(),
        finished: Some(now),
        ok: Some(false),
        error: Some(format!(
            "not started: the host's operations lock is held ({holder}); try again after it"
        )),
        snapshots: Vec::new(),
    }
}

/// Marks a run as started and runs it (backup, then drill) in a task that
/// returns the new state.
fn start(
    ctx: &Arc<Context>,
    state: &watch::Sender<BackupState>,
    trigger: &str,
) -> JoinHandle<BackupState> {
    let started = BackupRun {
        trigger: trigger.to_owned(),
        started: rfc3339(SystemTime::now()),
        finished: None,
        ok: None,
        error: None,
        snapshots: Vec::new(),
    };
    state.send_modify(|s| {
        s.last_run = Some(started.clone());
        s.running = true;
    });
    let (ctx, mut st) = (Arc::clone(ctx), state.borrow().clone());
    tokio::spawn(async move {
        run::backup_and_drill(&ctx, started, &mut st).await;
        st
    })
}
