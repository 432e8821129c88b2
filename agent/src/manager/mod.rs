//! The service manager: one task that owns the desired state and is the
//! only writer of unit state changes, so operations never interleave.
//! hostctl's requests arrive through a [`ManagerHandle`]; unit changes
//! arrive as systemd signals; what it knows is published as a
//! [`ManagerView`] for /health, /metrics and `GET /v1/status`.

mod actions;
mod backoff;
mod front;
pub mod http;
pub mod probe;
#[cfg(test)]
mod tests;

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
use crate::health::Snapshot;
use crate::lifetime::Lifetime;
use crate::secrets::SecretsState;
use crate::state_file::JsonFile;
use crate::systemd::{JobError, SystemdError, Units};

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
    #[error(
        "{service} is not deployed yet: `hostctl deploy {service}` installs its first release and starts it"
    )]
    NotDeployed { service: String },
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
    #[error(transparent)]
    Routing(#[from] crate::front::client::RoutingError),
    #[error("the service manager has stopped (hostd is shutting down)")]
    Gone,
}

impl crate::http::Refusal for ManagerError {
    fn http_status(&self) -> u16 {
        match self {
            Self::UnknownService { .. } => 404,
            Self::NotInstanced { .. } | Self::OutOfRange { .. } => 422,
            Self::NotDeployed { .. } => 409,
            Self::Unhealthy { .. }
            | Self::Job(_)
            | Self::Systemd(_)
            | Self::Store(_)
            | Self::Postgres(_)
            | Self::Secrets(_)
            | Self::Routing(_) => 500,
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
    Reconfigure {
        config: Arc<Config>,
        restart: Vec<String>,
        scale: Vec<String>,
        progress: Progress,
        reply: oneshot::Sender<Result<(), ManagerError>>,
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

/// Reports that `step` of a rollout begins; when it began.
fn step_begins(progress: Option<&Progress>, step: &str) -> Instant {
    if let Some(p) = progress {
        let _ = p.send(hostd_api::DeployEvent::Step {
            step: step.to_owned(),
        });
    }
    Instant::now()
}

/// Reports that `step`, begun at `began`, is done.
fn step_done(progress: Option<&Progress>, step: String, began: Instant) {
    if let Some(p) = progress {
        let _ = p.send(hostd_api::DeployEvent::StepDone {
            step,
            seconds: began.elapsed().as_secs_f64(),
        });
    }
}

/// How the rest of hostd talks to the manager, and what it publishes.
#[derive(Clone)]
pub struct ManagerHandle {
    tx: mpsc::Sender<Request>,
    view: watch::Receiver<ManagerView>,
    changes: watch::Receiver<u64>,
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

    /// Switches to a new configuration: services it no longer declares
    /// leave the desired state (hostd stops supervising them), a declared
    /// `instances` that changed becomes the desired count, each of
    /// `restart` (new or changed) is brought up or restarted instance by
    /// instance through its health gate, and each of `scale` brought to
    /// its count (new instances gated, nothing restarted).
    pub async fn reconfigure(
        &self,
        config: Arc<Config>,
        restart: Vec<String>,
        scale: Vec<String>,
        progress: Progress,
    ) -> Result<(), ManagerError> {
        let (reply, rx) = oneshot::channel();
        let req = Request::Reconfigure {
            config,
            restart,
            scale,
            progress,
            reply,
        };
        self.tx.send(req).await.map_err(|_| ManagerError::Gone)?;
        rx.await.map_err(|_| ManagerError::Gone)?
    }

    /// What hostd keeps running and what it saw go wrong.
    pub fn view(&self) -> watch::Receiver<ManagerView> {
        self.view.clone()
    }

    /// Changes whenever a watched unit changed or the view did: the health
    /// checker looks again.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Whether hostd keeps `service` running (false after `hostctl stop`).
    pub fn keeps_running(&self, service: &str) -> bool {
        self.view
            .borrow()
            .desired
            .services
            .get(service)
            .is_some_and(|d| d.running)
    }

    /// A handle whose manager is gone: every call answers `Gone`.
    #[cfg(test)]
    pub fn detached() -> Self {
        Self {
            tx: mpsc::channel(1).0,
            view: watch::channel(ManagerView::default()).1,
            changes: watch::channel(0).1,
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

/// What the manager works with besides its settings.
pub struct Deps<U> {
    pub units: U,
    pub gate: Arc<dyn probe::HealthGate>,
    /// hostd's front: where the public port of an app on a port forwards.
    pub routing: Arc<dyn crate::front::client::Routing>,
    /// What the secrets runtime delivered: the start gate reads it.
    pub secrets: watch::Receiver<SecretsState>,
    /// The health checker's rounds: an operation answers once a round that
    /// began after it shows its outcome.
    pub snapshots: watch::Receiver<Snapshot>,
}

struct Manager<U> {
    units: U,
    gate: Arc<dyn probe::HealthGate>,
    routing: Arc<dyn crate::front::client::Routing>,
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
    changes: watch::Sender<u64>,
    snapshots: watch::Receiver<Snapshot>,
    secrets: watch::Receiver<SecretsState>,
}

/// Restores the desired state (saved, else from the config), starts the
/// manager task and returns at once: bringing units to that state happens
/// in the task, so hostd reports READY without waiting for slow services.
pub async fn spawn<U: Units>(
    config: Arc<Config>,
    deps: Deps<U>,
    lifetime: &Lifetime,
) -> Result<ManagerHandle, ManagerError> {
    let store = desired_file(&config.state_dir);
    let desired = DesiredState::reconcile_with(&config, store.load()?.as_ref());
    store.save(&desired)?;
    deps.units.subscribe().await?;
    let (view_tx, view) = watch::channel(ManagerView {
        desired: desired.clone(),
        ..ManagerView::default()
    });
    let (changes_tx, changes) = watch::channel(0);
    let (tx, rx) = mpsc::channel(16);
    let (new_signals, new_signal_rx) = mpsc::unbounded_channel();
    let manager = Manager {
        units: deps.units,
        gate: deps.gate,
        routing: deps.routing,
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
        changes: changes_tx,
        snapshots: deps.snapshots,
        secrets: deps.secrets,
    };
    let ending = lifetime.clone();
    lifetime.spawn(
        "service manager",
        manager.run(rx, new_signal_rx, async move { ending.ending().await }),
    );
    Ok(ManagerHandle { tx, view, changes })
}

impl<U: Units> Manager<U> {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut new_signal_rx: mpsc::UnboundedReceiver<BoxStream<'static, UnitName>>,
        ending: impl Future<Output = ()>,
    ) {
        let mut signals: SelectAll<BoxStream<'static, UnitName>> = SelectAll::new();
        let all: Vec<String> = self.config.services.keys().cloned().collect();
        self.reconcile(all).await;
        tokio::pin!(ending);
        loop {
            let wake = self
                .scheduled
                .values()
                .copied()
                .chain(self.reconcile_retry.map(|(at, _)| at))
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                req = rx.recv() => match req {
                    Some(req) => self.handle(req).await,
                    None => return,
                },
                Some(stream) = new_signal_rx.recv() => signals.push(stream),
                Some(unit) = signals.next(), if !signals.is_empty() => {
                    self.on_change(unit).await;
                }
                () = tokio::time::sleep_until(wake),
                    if !self.scheduled.is_empty() || self.reconcile_retry.is_some() => {
                    self.run_due_restarts().await;
                    self.retry_reconcile().await;
                }
                () = &mut ending => return,
            }
        }
    }

    async fn handle(&mut self, req: Request) {
        let (result, reply) = match req {
            Request::Reconfigure {
                config,
                restart,
                scale,
                progress,
                reply,
            } => {
                let result = self.reconfigure(config, &restart, &scale, &progress).await;
                self.await_fresh_snapshot().await;
                let _ = reply.send(result);
                return;
            }
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
        let op_end = Instant::now();
        self.poke();
        // A round already under way when the operation ended may have read
        // the units before it: only one that began afterwards will do.
        let fresh = self.snapshots.wait_for(|snap| snap.round_started >= op_end);
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
        self.poke();
    }

    /// The health checker looks again soon.
    fn poke(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
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
        match self.units.watch_unit(unit).await {
            Ok(stream) => {
                self.watched.insert(unit.clone());
                let _ = self.new_signals.send(stream);
            }
            Err(e) => tracing::error!(%unit, "cannot follow unit changes: {e}"),
        }
    }
}
