//! Health checks run in the background on an interval and publish a cached
//! snapshot: the request rate to /health never changes the load on the
//! things being checked.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hostd_api::{ActiveState, ComponentHealth, HealthReport, HealthStatus, UnitStatus};
use tokio::sync::watch;

use crate::config::UnitName;
use crate::systemd::UnitStates;

/// One service hostd watches: the operator's name and its unit.
#[derive(Debug, Clone)]
pub struct WatchedService {
    pub service: String,
    pub unit: UnitName,
}

/// The result of one round of checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub units: Vec<UnitStatus>,
    pub report: HealthReport,
}

/// A bound on one check so a hung bus cannot stall the loop (and with it the
/// watchdog and the freshness of /health).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn check_once<S: UnitStates>(source: &S, services: &[WatchedService]) -> Snapshot {
    let mut units = Vec::with_capacity(services.len());
    let mut components = Vec::with_capacity(services.len());
    for svc in services {
        let name = format!("unit:{}", svc.service);
        let state = tokio::time::timeout(CHECK_TIMEOUT, source.unit_state(&svc.unit)).await;
        let component = match state {
            Ok(Ok(st)) => {
                let component = unit_component(&name, &svc.unit, &st);
                units.push(UnitStatus {
                    service: svc.service.clone(),
                    unit: svc.unit.to_string(),
                    instance: None,
                    active_state: st.active_state,
                    sub_state: st.sub_state,
                });
                component
            }
            Ok(Err(e)) => unhealthy(&name, error_chain(&e)),
            Err(_) => unhealthy(
                &name,
                format!("no answer from systemd within {}s", CHECK_TIMEOUT.as_secs()),
            ),
        };
        components.push(component);
    }
    let status = components
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(HealthStatus::Healthy);
    Snapshot {
        units,
        report: HealthReport {
            status,
            checked_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            components,
        },
    }
}

fn unit_component(name: &str, unit: &UnitName, st: &crate::systemd::UnitState) -> ComponentHealth {
    if st.load_state != "loaded" {
        return unhealthy(name, format!("{unit} is {}", st.load_state));
    }
    match st.active_state {
        ActiveState::Active | ActiveState::Reloading | ActiveState::Refreshing => ComponentHealth {
            name: name.to_owned(),
            status: HealthStatus::Healthy,
            reason: None,
        },
        other => unhealthy(
            name,
            format!("{unit} is {} ({})", other.as_str(), st.sub_state),
        ),
    }
}

fn unhealthy(name: &str, reason: String) -> ComponentHealth {
    ComponentHealth {
        name: name.to_owned(),
        status: HealthStatus::Unhealthy,
        reason: Some(reason),
    }
}

/// Error and its sources on one line: the top-level message alone ("cannot
/// read the state of unit x") hides the useful part.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Runs checks every `interval`, and at once whenever `changes` yields (a
/// unit changed state), until `shutdown` flips, publishing each snapshot.
/// The first snapshot is taken before this returns, so hostd never answers
/// /health with a made-up state.
pub async fn spawn_checker<S, C>(
    source: Arc<S>,
    services: Vec<WatchedService>,
    interval: Duration,
    mut changes: C,
    mut shutdown: watch::Receiver<bool>,
) -> (watch::Receiver<Snapshot>, tokio::task::JoinHandle<()>)
where
    S: UnitStates + Send + Sync + 'static,
    C: futures_util::Stream<Item = ()> + Send + Unpin + 'static,
{
    use futures_util::StreamExt;

    let first = check_once(source.as_ref(), &services).await;
    let (tx, rx) = watch::channel(first);
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; we just checked
        let mut changes_open = true;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                change = changes.next(), if changes_open => {
                    if change.is_none() {
                        tracing::warn!("unit change signals ended; checking on the interval only");
                        changes_open = false;
                        continue;
                    }
                }
                _ = shutdown.changed() => return,
            }
            let snap = check_once(source.as_ref(), &services).await;
            if snap.report.status != tx.borrow().report.status {
                tracing::info!(status = snap.report.status.as_str(), "health changed");
            }
            tx.send_replace(snap);
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::{SystemdError, UnitState};
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Answers from a table; a unit missing from it behaves like a bus error.
    struct FakeSystemd(HashMap<&'static str, (&'static str, ActiveState, &'static str)>);

    impl UnitStates for FakeSystemd {
        async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, SystemdError> {
            match self.0.get(unit.as_str()) {
                Some((load, active, sub)) => Ok(UnitState {
                    load_state: (*load).into(),
                    active_state: *active,
                    sub_state: (*sub).into(),
                }),
                None => Err(SystemdError::Connect(zbus::Error::Failure(
                    "bus gone".into(),
                ))),
            }
        }
    }

    fn svc(service: &str, unit: &str) -> Result<WatchedService, String> {
        Ok(WatchedService {
            service: service.into(),
            unit: UnitName::try_from(unit.to_owned())?,
        })
    }

    #[tokio::test]
    async fn all_active_is_healthy() -> Result<(), String> {
        let fake = FakeSystemd(HashMap::from([
            ("a.service", ("loaded", ActiveState::Active, "running")),
            ("b.service", ("loaded", ActiveState::Active, "running")),
        ]));
        let snap = check_once(&fake, &[svc("a", "a.service")?, svc("b", "b.service")?]).await;
        assert_eq!(snap.report.status, HealthStatus::Healthy);
        assert_eq!(snap.units.len(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn inactive_unit_is_named_with_its_state() -> Result<(), String> {
        let fake = FakeSystemd(HashMap::from([
            ("a.service", ("loaded", ActiveState::Active, "running")),
            (
                "redis-server.service",
                ("loaded", ActiveState::Inactive, "dead"),
            ),
        ]));
        let services = [
            svc("a", "a.service")?,
            svc("redis", "redis-server.service")?,
        ];
        let snap = check_once(&fake, &services).await;
        assert_eq!(snap.report.status, HealthStatus::Unhealthy);
        let failing: Vec<_> = snap
            .report
            .components
            .iter()
            .filter(|c| c.status != HealthStatus::Healthy)
            .collect();
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].name, "unit:redis");
        assert_eq!(
            failing[0].reason.as_deref(),
            Some("redis-server.service is inactive (dead)")
        );
        Ok(())
    }

    #[tokio::test]
    async fn missing_unit_and_bus_errors_are_unhealthy_with_reason() -> Result<(), String> {
        let fake = FakeSystemd(HashMap::from([(
            "gone.service",
            ("not-found", ActiveState::Inactive, "dead"),
        )]));
        let services = [svc("gone", "gone.service")?, svc("x", "x.service")?];
        let snap = check_once(&fake, &services).await;
        let reasons: Vec<_> = snap
            .report
            .components
            .iter()
            .filter_map(|c| c.reason.clone())
            .collect();
        assert_eq!(reasons[0], "gone.service is not-found");
        assert!(reasons[1].contains("bus gone"), "{reasons:?}");
        assert_eq!(
            snap.units.len(),
            1,
            "a unit we could not read has no state to show"
        );
        Ok(())
    }

    /// One unit whose state the test flips.
    struct Flippable(Mutex<ActiveState>);

    impl UnitStates for Flippable {
        async fn unit_state(&self, _: &UnitName) -> Result<UnitState, SystemdError> {
            let active_state = *self
                .0
                .lock()
                .map_err(|_| SystemdError::Connect(zbus::Error::Failure("poisoned".into())))?;
            Ok(UnitState {
                load_state: "loaded".into(),
                active_state,
                sub_state: "x".into(),
            })
        }
    }

    #[tokio::test]
    async fn a_change_signal_triggers_a_check_without_waiting_for_the_interval()
    -> Result<(), Box<dyn std::error::Error>> {
        let source = Arc::new(Flippable(Mutex::new(ActiveState::Active)));
        let (signal_tx, signal_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let changes = futures_util::stream::unfold(signal_rx, |mut rx| async move {
            rx.recv().await.map(|()| ((), rx))
        });
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (mut snaps, _task) = spawn_checker(
            Arc::clone(&source),
            vec![svc("redis", "redis-server.service")?],
            Duration::from_secs(3600),
            Box::pin(changes),
            stop_rx,
        )
        .await;
        assert_eq!(snaps.borrow().report.status, HealthStatus::Healthy);

        *source.0.lock().map_err(|_| "poisoned")? = ActiveState::Failed;
        signal_tx.send(())?;
        // The interval is an hour: only the signal can bring this snapshot.
        tokio::time::timeout(Duration::from_secs(10), snaps.changed()).await??;
        assert_eq!(snaps.borrow().report.status, HealthStatus::Unhealthy);
        Ok(())
    }
}
