//! The service manager: one task that owns the desired state and is the
//! only writer of unit state changes, so operations never interleave.
//! hostctl's requests arrive through a [`ManagerHandle`]; unit changes
//! arrive as systemd signals; what it knows is published as a
//! [`ManagerView`] for /health, /metrics and `GET /v1/status`.

mod backoff;
mod ops;
mod probe;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{BoxStream, SelectAll};
use hostd_api::{ActionResult, ServiceAction, UnitEvent};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{Config, UnitName};
use crate::desired::{DesiredState, MAX_EVENTS, ManagerView, WantedUnit, wanted_units};
use crate::state_file::JsonFile;
use crate::systemd::{JobError, Systemd, SystemdError};

/// Longest a single start/stop/restart job may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("no service named `{name}`; configured services: {}", .known.join(", "))]
    UnknownService { name: String, known: Vec<String> },
    #[error(
        "`{service}` is not an instanced service (its unit is not a template like `{service}@.service`)"
    )]
    NotInstanced { service: String },
    #[error("cannot scale {service} to {requested}: the valid range is 1 to {max} (max_instances)")]
    OutOfRange {
        service: String,
        requested: u32,
        max: u32,
    },
    #[error("{unit} did not become healthy: {reason}; last journal lines:\n{journal}")]
    Unhealthy {
        unit: String,
        reason: String,
        journal: String,
    },
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    #[error(transparent)]
    Store(#[from] crate::state_file::StateFileError),
    #[error(transparent)]
    Postgres(#[from] crate::postgres::PgError),
    /// A service that receives secrets lacks required ones: it is not
    /// started with a partial set (the reconcile retry tries again).
    #[error(transparent)]
    Secrets(#[from] crate::secrets::GateError),
    #[error("the service manager has stopped (hostd is shutting down)")]
    Gone,
}

impl ManagerError {
    /// The control API's status code. Exhaustive on purpose: a new error
    /// must decide what it means to hostctl.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownService { .. } => 404,
            Self::NotInstanced { .. } | Self::OutOfRange { .. } => 422,
            Self::Unhealthy { .. }
            | Self::Job(_)
            | Self::Systemd(_)
            | Self::Store(_)
            | Self::Postgres(_)
            | Self::Secrets(_) => 500,
            Self::Gone => 503,
        }
    }
}

type Reply = oneshot::Sender<Result<ActionResult, ManagerError>>;

enum Request {
    Action {
        service: String,
        action: ServiceAction,
        reply: Reply,
    },
    Scale {
        service: String,
        instances: u32,
        reply: Reply,
    },
    Rollout {
        service: String,
        gate: Gate,
        progress: Progress,
        reply: Reply,
    },
}

/// How an instance proves it is up: `path` on its health socket answers
/// 200 within `timeout` of its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub path: String,
    pub timeout: Duration,
}

impl Gate {
    pub fn of(svc: &crate::config::ServiceConfig) -> Self {
        Self {
            path: svc.health_path.clone(),
            timeout: svc.health_timeout.0,
        }
    }
}

/// Where a rollout reports each instance's restart as it goes.
pub type Progress = mpsc::UnboundedSender<hostd_api::DeployEvent>;

/// How the control API talks to the manager.
#[derive(Clone)]
pub struct ManagerHandle {
    tx: mpsc::Sender<Request>,
}

impl ManagerHandle {
    pub async fn action(
        &self,
        service: String,
        action: ServiceAction,
    ) -> Result<ActionResult, ManagerError> {
        self.call(|reply| Request::Action {
            service,
            action,
            reply,
        })
        .await
    }

    pub async fn scale(
        &self,
        service: String,
        instances: u32,
    ) -> Result<ActionResult, ManagerError> {
        self.call(|reply| Request::Scale {
            service,
            instances,
            reply,
        })
        .await
    }

    /// Restarts every instance of `service`, one at a time, each passing
    /// `gate` before the next (the others keep serving): how a new release
    /// goes live. Stops at the first instance that fails, with its journal.
    pub async fn rollout(
        &self,
        service: String,
        gate: Gate,
        progress: Progress,
    ) -> Result<ActionResult, ManagerError> {
        self.call(|reply| Request::Rollout {
            service,
            gate,
            progress,
            reply,
        })
        .await
    }

    /// A handle whose manager is gone: every call answers `Gone`.
    #[cfg(test)]
    pub fn detached() -> Self {
        Self {
            tx: mpsc::channel(1).0,
        }
    }

    async fn call(&self, req: impl FnOnce(Reply) -> Request) -> Result<ActionResult, ManagerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(req(reply))
            .await
            .map_err(|_| ManagerError::Gone)?;
        rx.await.map_err(|_| ManagerError::Gone)?
    }
}

/// `<state_dir>/desired.json`: what `hostctl scale` and `stop` asked for,
/// kept across restarts and reboots.
pub fn desired_file(state_dir: &std::path::Path) -> JsonFile<DesiredState> {
    JsonFile::new(state_dir.join("desired.json"), "desired state")
}

/// What `spawn` gives the rest of hostd.
pub struct Spawned {
    pub handle: ManagerHandle,
    pub view: watch::Receiver<ManagerView>,
    /// Yields whenever a watched unit changed: the health checker re-checks.
    pub changes: BoxStream<'static, ()>,
    /// Hand the health checker's snapshots back here once it runs, so an
    /// operation answers only when /health and `status` already show its
    /// outcome (the checker starts after the manager: it needs `view`).
    pub snapshots: oneshot::Sender<watch::Receiver<crate::health::Snapshot>>,
    pub task: tokio::task::JoinHandle<()>,
}

struct Manager {
    systemd: Systemd,
    config: Arc<Config>,
    store: JsonFile<DesiredState>,
    desired: DesiredState,
    restarts: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
    events: Vec<UnitEvent>,
    histories: HashMap<UnitName, backoff::FailureHistory>,
    /// Restarts waiting for their backoff to pass.
    scheduled: BTreeMap<UnitName, Instant>,
    /// Services not yet in their desired state (e.g. PostgreSQL was still
    /// starting at boot), retried with backoff until they are.
    unreconciled: std::collections::BTreeSet<String>,
    reconcile_retry: Option<(Instant, Duration)>,
    watched: HashSet<UnitName>,
    /// New signal streams for the task loop, which owns them (they are not
    /// Sync, and the manager is borrowed across awaits).
    new_signals: mpsc::UnboundedSender<BoxStream<'static, UnitName>>,
    view_tx: watch::Sender<ManagerView>,
    poke: mpsc::UnboundedSender<()>,
    snapshots: Option<watch::Receiver<crate::health::Snapshot>>,
    /// What the secrets runtime delivered: the start gate reads it.
    secrets: watch::Receiver<crate::secrets::SecretsState>,
}

/// Restores the desired state (saved, else from the config), starts the
/// manager task and returns at once: bringing units to that state happens
/// in the task, so hostd reports READY without waiting for slow services.
pub async fn spawn(
    systemd: Systemd,
    config: Arc<Config>,
    secrets: watch::Receiver<crate::secrets::SecretsState>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Spawned, ManagerError> {
    let store = desired_file(&config.state_dir);
    let desired = DesiredState::reconcile_with(&config, store.load()?.as_ref());
    store.save(&desired)?;
    systemd.subscribe().await?;
    let (view_tx, view) = watch::channel(ManagerView {
        desired: desired.clone(),
        ..ManagerView::default()
    });
    let (poke, poked) = mpsc::unbounded_channel();
    let (tx, mut rx) = mpsc::channel(16);
    let (new_signals, mut new_signal_rx) = mpsc::unbounded_channel();
    let mut manager = Manager {
        systemd,
        config,
        store,
        desired,
        restarts: BTreeMap::new(),
        failures: BTreeMap::new(),
        events: Vec::new(),
        histories: HashMap::new(),
        scheduled: BTreeMap::new(),
        unreconciled: std::collections::BTreeSet::new(),
        reconcile_retry: None,
        watched: HashSet::new(),
        new_signals,
        view_tx,
        poke,
        snapshots: None,
        secrets,
    };
    let (snapshots_tx, mut snapshots_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut signals: SelectAll<BoxStream<'static, UnitName>> = SelectAll::new();
        let all: Vec<String> = manager.config.services.keys().cloned().collect();
        manager.reconcile(all).await;
        loop {
            let wake = manager
                .scheduled
                .values()
                .copied()
                .chain(manager.reconcile_retry.map(|(at, _)| at))
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                req = rx.recv() => match req {
                    Some(req) => manager.handle(req).await,
                    None => return,
                },
                Some(stream) = new_signal_rx.recv() => signals.push(stream),
                Ok(rx) = &mut snapshots_rx, if manager.snapshots.is_none() => {
                    manager.snapshots = Some(rx);
                }
                Some(unit) = signals.next(), if !signals.is_empty() => {
                    manager.on_change(unit).await;
                }
                () = tokio::time::sleep_until(wake),
                    if !manager.scheduled.is_empty() || manager.reconcile_retry.is_some() => {
                    manager.run_due_restarts().await;
                    manager.retry_reconcile().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    });
    let changes =
        futures_util::stream::unfold(
            poked,
            |mut rx| async move { rx.recv().await.map(|()| ((), rx)) },
        )
        .boxed();
    Ok(Spawned {
        handle: ManagerHandle { tx },
        view,
        changes,
        snapshots: snapshots_tx,
        task,
    })
}

impl Manager {
    async fn handle(&mut self, req: Request) {
        let (result, reply) = match req {
            Request::Action {
                service,
                action,
                reply,
            } => (self.action(&service, action).await, reply),
            Request::Scale {
                service,
                instances,
                reply,
            } => (self.scale(&service, instances).await, reply),
            Request::Rollout {
                service,
                gate,
                progress,
                reply,
            } => (self.rollout(&service, &gate, &progress).await, reply),
        };
        self.await_fresh_snapshot().await;
        let _ = reply.send(result);
    }

    /// Asks the checker for a round and waits (bounded) for it, so that a
    /// `hostctl status` right after `hostctl scale` shows the new instances.
    /// Units started during an operation were watched only from its end (the
    /// loop was busy), so without this their start could go unseen until the
    /// next interval.
    async fn await_fresh_snapshot(&mut self) {
        const BOUND: Duration = Duration::from_secs(3);
        let Some(rx) = self.snapshots.as_mut() else {
            let _ = self.poke.send(());
            return;
        };
        let op_end = Instant::now();
        let _ = self.poke.send(());
        // A round already under way when the operation ended may have read
        // the units before it: only one that began afterwards will do.
        let fresh = rx.wait_for(|snap| snap.round_started >= op_end);
        if tokio::time::timeout(BOUND, fresh).await.is_err() {
            tracing::debug!("no fresh health round within {BOUND:?}; answering anyway");
        }
    }

    fn wanted(&self) -> Vec<WantedUnit> {
        wanted_units(&self.config, &self.desired)
    }

    fn publish(&self) {
        self.view_tx.send_replace(ManagerView {
            desired: self.desired.clone(),
            restarts: self.restarts.clone(),
            failures: self.failures.clone(),
            events: self.events.clone(),
        });
        let _ = self.poke.send(());
    }

    fn record(&mut self, event: UnitEvent) {
        tracing::warn!(
            unit = event.unit,
            result = event.result,
            exit_status = event.exit_status,
            "{}",
            event.action
        );
        *self.failures.entry(event.service.clone()).or_default() += 1;
        self.events.push(event);
        if self.events.len() > MAX_EVENTS {
            let excess = self.events.len() - MAX_EVENTS;
            self.events.drain(..excess);
        }
        self.publish();
    }

    /// Follows `unit`'s state changes from now on (once per unit).
    async fn watch(&mut self, unit: &UnitName) {
        if self.watched.contains(unit) {
            return;
        }
        match self.systemd.watch_unit(unit).await {
            Ok(stream) => {
                self.watched.insert(unit.clone());
                let _ = self.new_signals.send(stream);
            }
            Err(e) => tracing::error!(%unit, "cannot follow unit changes: {e}"),
        }
    }
}
