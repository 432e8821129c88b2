//! Health checks run in the background on an interval and publish a cached
//! snapshot: the request rate to /health and /metrics never changes the
//! load on the things being checked.

use std::sync::Arc;
use std::time::Duration;

use hostd_api::{HealthReport, HealthStatus, UnitStatus};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::checks::{
    HttpUnixProbe, InstanceProbe, PostgresProbe, Probe, RedisProbe, SysinfoProbe, SystemProbe,
    SystemSample,
};
use crate::config::{Config, CurrentConfig};
use crate::desired::ManagerView;
use crate::lifetime::Lifetime;
use crate::secrets::SecretsState;
use crate::systemd::UnitStates;

pub mod http;
mod round;
#[cfg(test)]
mod tests;

pub use round::check_once;

/// The result of one round of checks, with the figures /metrics and the
/// EMF writer publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub units: Vec<UnitStatus>,
    pub report: HealthReport,
    pub system: SystemSample,
    /// When the round behind this snapshot began: what it saw is at least
    /// this fresh (the manager waits for one newer than its operation).
    pub round_started: tokio::time::Instant,
    /// With `[backup]`: the backup figures of this round.
    pub backup: Option<crate::backup::health::BackupFigures>,
    /// The scheduled jobs as the observer last saw them.
    pub jobs: Vec<hostd_api::JobStatus>,
}

impl Snapshot {
    pub fn new(units: Vec<UnitStatus>, report: HealthReport) -> Self {
        Self {
            units,
            report,
            system: SystemSample::default(),
            round_started: tokio::time::Instant::now(),
            backup: None,
            jobs: Vec::new(),
        }
    }
}

/// A component another subsystem judges from what it publishes (no I/O),
/// read each round: the health checker needs nothing else of it.
pub trait Judge: Send + Sync {
    fn component(&self, now: std::time::SystemTime) -> Option<hostd_api::ComponentHealth>;
}

/// The checks beyond unit states; `None` where not configured.
pub struct Probes {
    pub postgres: Option<Arc<dyn Probe>>,
    pub redis: Option<Arc<dyn Probe>>,
    pub instances: Arc<dyn InstanceProbe>,
    pub system: Option<Arc<dyn SystemProbe>>,
    /// What the secrets runtime publishes; read each round (no I/O).
    pub secrets: Option<watch::Receiver<SecretsState>>,
    /// What the backup task publishes, when `[backup]` is configured.
    pub backup: Option<watch::Receiver<crate::backup::BackupState>>,
    /// What the jobs observer publishes (one entry per `[jobs.NAME]`).
    pub jobs: Option<watch::Receiver<Vec<hostd_api::JobStatus>>>,
    /// How shipping to CloudWatch is doing.
    pub shipping: Option<Arc<dyn Judge>>,
}

/// What the checker reads besides its own probes.
pub struct Deps<S> {
    pub units: S,
    pub view: watch::Receiver<ManagerView>,
    /// Changes when a managed unit changed: a round soon, not at the interval.
    pub changes: watch::Receiver<u64>,
    pub secrets: Option<watch::Receiver<SecretsState>>,
    pub backup: Option<watch::Receiver<crate::backup::BackupState>>,
    pub jobs: watch::Receiver<Vec<hostd_api::JobStatus>>,
    pub shipping: Option<Arc<dyn Judge>>,
}

impl Probes {
    /// The real probes for `config.checks`, and `secrets` for the secrets
    /// component and Redis's password.
    fn from_config(config: &Config, deps: &ProbeDeps) -> Self {
        let checks = &config.checks;
        let timeout = checks.timeout.0;
        let system = match SysinfoProbe::new(checks.disk.paths.clone()) {
            Ok(p) => Some(Arc::new(p) as Arc<dyn SystemProbe>),
            Err(e) => {
                tracing::error!(error = %e, "cannot read system figures; disk, memory and load are not checked");
                None
            }
        };
        Self {
            postgres: checks
                .postgres
                .as_deref()
                .map(|c| Arc::new(PostgresProbe::spawn(c, timeout)) as Arc<dyn Probe>),
            redis: checks.redis.as_deref().map(|u| {
                let password = config
                    .secrets
                    .as_ref()
                    .and_then(|s| s.redis_password.as_ref())
                    .and(deps.secrets.clone());
                Arc::new(RedisProbe::with_password(u, timeout, password)) as Arc<dyn Probe>
            }),
            instances: Arc::new(HttpUnixProbe { timeout }),
            system,
            secrets: deps.secrets.clone(),
            // Judged only while `[backup]` is configured: an apply may add
            // or remove it.
            backup: config.backup.as_ref().and(deps.backup.clone()),
            jobs: Some(deps.jobs.clone()),
            shipping: deps.shipping.clone(),
        }
    }
}

/// Rounds triggered by unit signals or view changes are at least this far
/// apart, so a unit flapping in a restart loop cannot turn into a stream of
/// queries to PostgreSQL and Redis.
const MIN_ROUND_SPACING: Duration = Duration::from_millis(250);

/// What the checker publishes; made before the manager (which waits on it
/// for a round newer than its operation) and filled by [`spawn`].
pub fn channel() -> (watch::Sender<Snapshot>, watch::Receiver<Snapshot>) {
    watch::channel(Snapshot::new(Vec::new(), report(Vec::new())))
}

#[derive(Clone)]
pub struct HealthHandle {
    snapshot: watch::Receiver<Snapshot>,
}

impl HealthHandle {
    pub fn snapshot(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }
}

/// Runs the first round before it returns, so hostd never answers /health
/// with a made-up state; then checks every `health.check_interval`, and
/// soon after a unit changed or the manager's view did (scaling, stop),
/// until hostd stops, publishing each snapshot on `publish`.
pub async fn spawn<S: UnitStates + Send + Sync + 'static>(
    current: CurrentConfig,
    deps: Deps<S>,
    publish: watch::Sender<Snapshot>,
    lifetime: &Lifetime,
) -> HealthHandle {
    let probe_deps = ProbeDeps {
        secrets: deps.secrets,
        backup: deps.backup,
        jobs: deps.jobs,
        shipping: deps.shipping,
    };
    let config = current.get();
    let probes = Probes::from_config(&config, &probe_deps);
    let checker = Checker {
        units: deps.units,
        current,
        config,
        probe_deps,
        probes,
    };
    start(checker, deps.view, deps.changes, publish, lifetime).await
}

async fn start<S: UnitStates + Send + Sync + 'static>(
    checker: Checker<S>,
    view: watch::Receiver<ManagerView>,
    changes: watch::Receiver<u64>,
    publish: watch::Sender<Snapshot>,
    lifetime: &Lifetime,
) -> HealthHandle {
    let first = checker.round(&view).await;
    publish.send_replace(first);
    let snapshot = publish.subscribe();
    let ending = lifetime.clone();
    lifetime.spawn(
        "health checker",
        checker.run(publish, view, changes, async move {
            ending.ending().await;
        }),
    );
    HealthHandle { snapshot }
}

/// What the probes are built from besides the configuration.
struct ProbeDeps {
    secrets: Option<watch::Receiver<SecretsState>>,
    backup: Option<watch::Receiver<crate::backup::BackupState>>,
    jobs: watch::Receiver<Vec<hostd_api::JobStatus>>,
    shipping: Option<Arc<dyn Judge>>,
}

struct Checker<S> {
    units: S,
    current: CurrentConfig,
    /// The configuration `probes` were built for.
    config: Arc<Config>,
    probe_deps: ProbeDeps,
    probes: Probes,
}

impl<S: UnitStates> Checker<S> {
    async fn round(&self, view: &watch::Receiver<ManagerView>) -> Snapshot {
        // Clone out of the borrow: the guard must not live across awaits.
        let current = view.borrow().clone();
        check_once(&self.units, &self.config, &current, &self.probes).await
    }

    /// A new configuration in force: its services checked from the next
    /// round; new probes only when what they are built from changed (a
    /// PostgreSQL or Redis address, disk paths, thresholds, whether Redis
    /// has a password and backups are judged), so a probe's connection is
    /// not dropped for a job added. True when the interval changed.
    fn follow_config(&mut self) -> bool {
        let new = self.current.get();
        let probed = |c: &Config| {
            (
                c.checks.clone(),
                c.secrets.as_ref().map(|s| s.redis_password.is_some()),
                c.backup.is_some(),
            )
        };
        if probed(&new) != probed(&self.config) {
            self.probes = Probes::from_config(&new, &self.probe_deps);
        }
        let interval_changed = new.health.check_interval != self.config.health.check_interval;
        self.config = new;
        interval_changed
    }

    async fn run(
        mut self,
        tx: watch::Sender<Snapshot>,
        mut view: watch::Receiver<ManagerView>,
        mut changes: watch::Receiver<u64>,
        ending: impl Future<Output = ()>,
    ) {
        tokio::pin!(ending);
        let mut ticker = tokio::time::interval(self.config.health.check_interval.0);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; we just checked
        let (mut changes_open, mut view_open) = (true, true);
        let mut config_changes = self.current.clone();
        let mut last = Instant::now();
        loop {
            let triggered = tokio::select! {
                _ = ticker.tick() => false,
                () = config_changes.changed() => {
                    if self.follow_config() {
                        ticker = tokio::time::interval(self.config.health.check_interval.0);
                        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        ticker.tick().await;
                    }
                    true
                }
                changed = changes.changed(), if changes_open => {
                    if changed.is_err() {
                        tracing::warn!("unit change signals ended; checking on the interval only");
                        changes_open = false;
                        continue;
                    }
                    true
                }
                changed = view.changed(), if view_open => {
                    if changed.is_err() {
                        view_open = false;
                        continue;
                    }
                    true
                }
                () = &mut ending => return,
            };
            if triggered {
                tokio::select! {
                    () = tokio::time::sleep_until(last + MIN_ROUND_SPACING) => {}
                    () = &mut ending => return,
                }
            }
            // What changed while waiting is covered by this round.
            changes.mark_unchanged();
            view.mark_unchanged();
            let snap = self.round(&view).await;
            last = Instant::now();
            if snap.report.status != tx.borrow().report.status {
                tracing::info!(status = snap.report.status.as_str(), "health changed");
            }
            tx.send_replace(snap);
        }
    }
}

pub(crate) fn report(components: Vec<hostd_api::ComponentHealth>) -> HealthReport {
    let status = components
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(HealthStatus::Healthy);
    HealthReport {
        status,
        checked_at: hostd_api::time::now_rfc3339(),
        components,
    }
}
