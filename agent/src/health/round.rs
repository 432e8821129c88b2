//! One round of checks: every wanted unit, then PostgreSQL, Redis, each API
//! instance and the host's figures, all concurrently.

use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use hostd_api::{ActiveState, ComponentHealth, HealthStatus, UnitStatus};

use hostd_api::error_chain;

use super::{Probes, Snapshot, report};
use crate::checks::{CheckError, InstanceAddress, Probe, SystemSample, system};
use crate::config::{Config, UnitName};
use crate::desired::{ManagerView, WantedUnit, wanted_units};
use crate::secrets::SecretsState;
use crate::systemd::{UnitState, UnitStates};

/// A bound on one unit read so a hung bus cannot stall the loop (and with it
/// the watchdog and the freshness of /health).
const UNIT_TIMEOUT: Duration = Duration::from_secs(5);

pub const NOT_DEPLOYED: &str = "not deployed: starts with its first release";

pub async fn check_once<S: UnitStates>(
    source: &S,
    config: &Config,
    view: &ManagerView,
    probes: &Probes,
) -> Snapshot {
    let round_started = tokio::time::Instant::now();
    let wanted = wanted_units(config, &view.desired);
    let undeployed: Vec<&str> = config
        .services
        .iter()
        .filter(|(_, s)| s.awaits_first_release())
        .map(|(name, _)| name.as_str())
        .collect();
    let sockets = instance_sockets(config, &wanted, &undeployed);
    let (units, postgres, redis, instances, sample) = tokio::join!(
        check_units(source, &wanted, &undeployed),
        probe("postgres", probes.postgres.as_deref()),
        probe("redis", probes.redis.as_deref()),
        join_all(sockets.iter().map(|(name, sock, path)| async move {
            let r = probes.instances.check(sock, path).await;
            from_result(name, r)
        })),
        async {
            match &probes.system {
                Some(p) => Some(p.sample().await),
                None => None,
            }
        },
    );
    let (units, mut components) = units;
    components.extend(postgres);
    components.extend(redis);
    components.extend(instances);
    if let Some(s) = &sample {
        components.extend(system::evaluate(s, &config.checks));
    }
    if let Some(rx) = &probes.secrets {
        components.extend(secrets_component(&rx.borrow()));
    }
    let mut backup = None;
    if let (Some(rx), Some(b)) = (&probes.backup, &config.backup) {
        let (st, now) = (rx.borrow(), SystemTime::now());
        components.push(crate::backup::health::component(&st, b.max_age.0, now));
        backup = Some(crate::backup::health::figures(&st, now));
    }
    if let Some(judge) = &probes.shipping {
        components.extend(judge.component(SystemTime::now()));
    }
    let jobs = probes
        .jobs
        .as_ref()
        .map(|rx| rx.borrow().clone())
        .unwrap_or_default();
    components.extend(jobs.iter().map(|j| ComponentHealth {
        name: format!("job:{}", j.name),
        status: j.health,
        reason: j.reason.clone(),
    }));
    let mut snap = Snapshot::new(units, report(components));
    snap.jobs = jobs;
    snap.backup = backup;
    snap.system = sample.unwrap_or_else(SystemSample::default);
    snap.round_started = round_started;
    snap
}

fn unit_label(w: &WantedUnit) -> String {
    match w.instance {
        Some(n) => format!("{}@{n}", w.service),
        None => w.service.clone(),
    }
}

/// An app awaiting its first release is reported, not judged: nothing
/// of it should run yet.
async fn check_units<S: UnitStates>(
    source: &S,
    wanted: &[WantedUnit],
    undeployed: &[&str],
) -> (Vec<UnitStatus>, Vec<ComponentHealth>) {
    let mut units = Vec::with_capacity(wanted.len());
    let mut components = Vec::with_capacity(wanted.len());
    for w in wanted {
        let name = format!("unit:{}", unit_label(w));
        let state = tokio::time::timeout(UNIT_TIMEOUT, source.unit_state(&w.unit)).await;
        let component = match state {
            Ok(Ok(st)) => {
                units.push(UnitStatus {
                    service: w.service.clone(),
                    unit: w.unit.to_string(),
                    instance: w.instance,
                    active_state: st.active_state,
                    sub_state: st.sub_state.clone(),
                });
                if undeployed.contains(&w.service.as_str()) {
                    ComponentHealth {
                        name,
                        status: HealthStatus::Healthy,
                        reason: Some(NOT_DEPLOYED.into()),
                    }
                } else if w.running {
                    unit_component(&name, &w.unit, &st)
                } else {
                    unhealthy(&name, "stopped by hostctl stop".into())
                }
            }
            Ok(Err(e)) => unhealthy(&name, error_chain(&e)),
            Err(_) => unhealthy(
                &name,
                format!("no answer from systemd within {}s", UNIT_TIMEOUT.as_secs()),
            ),
        };
        components.push(component);
    }
    (units, components)
}

/// `(component name, address, path)` for each running instance of a
/// service with a `health_socket` or a `port`; a stopped one is already
/// reported by its unit.
fn instance_sockets(
    config: &Config,
    wanted: &[WantedUnit],
    undeployed: &[&str],
) -> Vec<(String, InstanceAddress, String)> {
    wanted
        .iter()
        .filter(|w| w.running && !undeployed.contains(&w.service.as_str()))
        .filter_map(|w| {
            let svc = config.services.get(&w.service)?;
            Some((
                format!("instance:{}", unit_label(w)),
                InstanceAddress::of(svc, w.instance)?,
                svc.health_path.clone(),
            ))
        })
        .collect()
}

async fn probe(name: &str, p: Option<&dyn Probe>) -> Option<ComponentHealth> {
    Some(from_result(name, p?.check().await))
}

fn from_result(name: &str, r: Result<(), CheckError>) -> ComponentHealth {
    match r {
        Ok(()) => ComponentHealth {
            name: name.to_owned(),
            status: HealthStatus::Healthy,
            reason: None,
        },
        Err(e) => unhealthy(name, e.to_string()),
    }
}

/// `secrets`: healthy when fresh; degraded "secrets stale since T" while
/// services run on the stored set, or with the problem applying them
/// (Redis refusing its new password); unhealthy when none could be
/// delivered.
/// Absent without `[secrets]`.
pub(crate) fn secrets_component(state: &SecretsState) -> Option<ComponentHealth> {
    const NAME: &str = "secrets";
    if !state.configured {
        return None;
    }
    if state.delivered.is_none() {
        let why = state.problem.as_deref().unwrap_or("not fetched yet");
        return Some(unhealthy(NAME, format!("no secrets delivered: {why}")));
    }
    // Stale first: the fetch failing is the root of any later problem.
    Some(
        match state.stale_message().or_else(|| state.problem.clone()) {
            Some(reason) => ComponentHealth {
                name: NAME.to_owned(),
                status: HealthStatus::Degraded,
                reason: Some(reason),
            },
            None => ComponentHealth {
                name: NAME.to_owned(),
                status: HealthStatus::Healthy,
                reason: None,
            },
        },
    )
}

fn unit_component(name: &str, unit: &UnitName, st: &UnitState) -> ComponentHealth {
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
