use super::*;
use crate::checks::{CheckError, InstanceAddress, system::DiskSample};
use crate::config::UnitName;
use crate::desired::DesiredState;
use crate::systemd::{SystemdError, UnitState};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hostd_api::ActiveState;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Answers from a table; a unit missing from it behaves like a bus error.
struct FakeSystemd(Mutex<HashMap<String, (&'static str, ActiveState)>>);

impl FakeSystemd {
    fn new(units: &[(&str, &'static str, ActiveState)]) -> Self {
        Self(Mutex::new(
            units
                .iter()
                .map(|(u, load, active)| ((*u).to_owned(), (*load, *active)))
                .collect(),
        ))
    }
    fn set(&self, unit: &str, active: ActiveState) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(unit.to_owned(), ("loaded", active));
        }
    }
}

impl UnitStates for FakeSystemd {
    async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, SystemdError> {
        let found = self
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(unit.as_str()).copied());
        match found {
            Some((load, active)) => Ok(UnitState {
                load_state: load.into(),
                active_state: active,
                sub_state: if active == ActiveState::Active {
                    "running"
                } else {
                    "dead"
                }
                .into(),
            }),
            None => Err(SystemdError::Connect(zbus::Error::Failure(
                "bus gone".into(),
            ))),
        }
    }
}

/// A probe with a fixed answer that counts its calls.
struct FakeProbe(Result<(), CheckError>, AtomicUsize);

impl Probe for FakeProbe {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        futures_util::future::ready(self.0.clone()).boxed()
    }
}

/// Healthy unless the socket path contains "sick".
struct FakeInstances;

impl InstanceProbe for FakeInstances {
    fn check<'a>(
        &'a self,
        socket: &'a InstanceAddress,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), CheckError>> {
        let r = if socket.to_string().contains("sick") {
            Err(CheckError::Failed {
                what: format!("GET /health on {socket}"),
                reason: "HTTP 503".into(),
            })
        } else {
            Ok(())
        };
        futures_util::future::ready(r).boxed()
    }
}

struct FakeSystem(SystemSample);

impl SystemProbe for FakeSystem {
    fn sample(&self) -> BoxFuture<'_, SystemSample> {
        futures_util::future::ready(self.0.clone()).boxed()
    }
}

fn calm() -> SystemSample {
    SystemSample {
        disks: vec![DiskSample {
            path: "/data".into(),
            mount_point: Some("/".into()),
            used_ratio: Some(0.5),
        }],
        memory_used_ratio: Some(0.3),
        load1: Some(0.1),
        cpus: 2,
        cpu_usage_ratio: Some(0.05),
    }
}

fn probes(pg: Result<(), CheckError>, system: SystemSample) -> (Probes, Arc<FakeProbe>) {
    let pg = Arc::new(FakeProbe(pg, AtomicUsize::new(0)));
    let p = Probes {
        postgres: Some(Arc::clone(&pg) as Arc<dyn Probe>),
        redis: Some(Arc::new(FakeProbe(Ok(()), AtomicUsize::new(0)))),
        instances: Arc::new(FakeInstances),
        system: Some(Arc::new(FakeSystem(system))),
        secrets: None,
        backup: None,
        jobs: None,
        shipping: None,
    };
    (p, pg)
}

const CONFIG: &str = "[services.api]\nunit = \"api@.service\"\ninstances = 2\n\
    health_socket = \"/run/api/{instance}/health.sock\"\n\
    [services.redis]\nunit = \"redis-server.service\"\n";

fn config(text: &str) -> Res<Arc<Config>> {
    Ok(Arc::new(Config::parse(Path::new("hostd.toml"), text)?))
}

fn view(c: &Config) -> ManagerView {
    ManagerView {
        desired: DesiredState::reconcile_with(c, None),
        ..ManagerView::default()
    }
}

fn all_active() -> FakeSystemd {
    FakeSystemd::new(&[
        ("api@1.service", "loaded", ActiveState::Active),
        ("api@2.service", "loaded", ActiveState::Active),
        ("redis-server.service", "loaded", ActiveState::Active),
    ])
}

fn names(s: &Snapshot) -> Vec<(&str, HealthStatus)> {
    s.report
        .components
        .iter()
        .map(|c| (c.name.as_str(), c.status))
        .collect()
}

#[tokio::test]
async fn every_component_passing_is_healthy_with_the_documented_names() -> Res {
    let c = config(CONFIG)?;
    let (p, _) = probes(Ok(()), calm());
    let snap = check_once(&all_active(), &c, &view(&c), &p).await;
    assert_eq!(snap.report.status, HealthStatus::Healthy);
    let got: Vec<_> = names(&snap).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        got,
        [
            "unit:api@1",
            "unit:api@2",
            "unit:redis",
            "postgres",
            "redis",
            "instance:api@1",
            "instance:api@2",
            "disk:/data",
            "memory",
            "load"
        ]
    );
    assert_eq!(snap.units[1].instance, Some(2));
    assert_eq!(snap.system.cpu_usage_ratio, Some(0.05));
    Ok(())
}

#[tokio::test]
async fn a_failing_dependency_is_unhealthy_with_its_reason() -> Res {
    let c = config(CONFIG)?;
    let down = CheckError::Failed {
        what: "PostgreSQL at /run/postgresql".into(),
        reason: "connection refused".into(),
    };
    let (p, _) = probes(Err(down), calm());
    let snap = check_once(&all_active(), &c, &view(&c), &p).await;
    assert_eq!(snap.report.status, HealthStatus::Unhealthy);
    let failing: Vec<_> = snap
        .report
        .components
        .iter()
        .filter(|c| c.status != HealthStatus::Healthy)
        .collect();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].name, "postgres");
    assert_eq!(
        failing[0].reason.as_deref(),
        Some("PostgreSQL at /run/postgresql: connection refused")
    );
    Ok(())
}

#[tokio::test]
async fn a_warning_is_degraded_not_unhealthy() -> Res {
    let c = config(CONFIG)?;
    let mut full = calm();
    full.disks[0].used_ratio = Some(0.85);
    let (p, _) = probes(Ok(()), full);
    let snap = check_once(&all_active(), &c, &view(&c), &p).await;
    assert_eq!(snap.report.status, HealthStatus::Degraded);
    Ok(())
}

struct Behind;

impl super::Judge for Behind {
    fn component(&self, _now: std::time::SystemTime) -> Option<hostd_api::ComponentHealth> {
        Some(hostd_api::ComponentHealth {
            name: "cloudwatch".into(),
            status: HealthStatus::Degraded,
            reason: Some("6m behind".into()),
        })
    }
}

#[tokio::test]
async fn a_judged_component_is_part_of_every_round() -> Res {
    let c = config(CONFIG)?;
    let (mut p, _) = probes(Ok(()), calm());
    p.shipping = Some(Arc::new(Behind));
    let snap = check_once(&all_active(), &c, &view(&c), &p).await;
    assert_eq!(snap.report.status, HealthStatus::Degraded);
    assert!(names(&snap).contains(&("cloudwatch", HealthStatus::Degraded)));
    Ok(())
}

#[tokio::test]
async fn stale_secrets_are_degraded_saying_since_when_and_fresh_ones_healthy() -> Res {
    use crate::secrets::SecretsState;
    let c = config(CONFIG)?;
    let since = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let state = SecretsState {
        configured: true,
        delivered: Some(Default::default()),
        stale_since: Some(since),
        ..SecretsState::default()
    };
    let (tx, rx) = watch::channel(state);
    let (mut p, _) = probes(Ok(()), calm());
    p.secrets = Some(rx);
    let snap = check_once(&all_active(), &c, &view(&c), &p).await;
    assert_eq!(snap.report.status, HealthStatus::Degraded);
    let secrets = snap.report.components.iter().find(|c| c.name == "secrets");
    assert_eq!(
        secrets.and_then(|c| c.reason.as_deref()),
        Some("secrets stale since 2023-11-14T22:13:20Z")
    );
    tx.send_modify(|s| s.stale_since = None);
    let snap = check_once(&all_active(), &c, &view(&c), &p).await;
    assert_eq!(snap.report.status, HealthStatus::Healthy);
    assert!(names(&snap).contains(&("secrets", HealthStatus::Healthy)));
    Ok(())
}

#[tokio::test]
async fn units_report_inactive_missing_bus_errors_and_deliberate_stops() -> Res {
    let c = config(CONFIG)?;
    let systemd = FakeSystemd::new(&[
        ("api@1.service", "loaded", ActiveState::Inactive),
        ("api@2.service", "not-found", ActiveState::Inactive),
    ]);
    let mut v = view(&c);
    if let Some(r) = v.desired.services.get_mut("redis") {
        r.running = false;
    }
    let (p, _) = probes(Ok(()), calm());
    let snap = check_once(&systemd, &c, &v, &p).await;
    let reason = |n: &str| {
        snap.report
            .components
            .iter()
            .find(|c| c.name == n)
            .and_then(|c| c.reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(reason("unit:api@1"), "api@1.service is inactive (dead)");
    assert_eq!(reason("unit:api@2"), "api@2.service is not-found");
    // redis is missing from the fake (a bus error) but stopped on purpose:
    // the bus error wins because there is no state to judge.
    assert!(reason("unit:redis").contains("bus gone"), "{snap:?}");
    Ok(())
}

#[tokio::test]
async fn a_unit_stopped_by_hostctl_is_unhealthy_saying_so_and_not_probed() -> Res {
    let c = config(CONFIG)?;
    let systemd = FakeSystemd::new(&[
        ("api@1.service", "loaded", ActiveState::Inactive),
        ("api@2.service", "loaded", ActiveState::Inactive),
        ("redis-server.service", "loaded", ActiveState::Active),
    ]);
    let mut v = view(&c);
    if let Some(api) = v.desired.services.get_mut("api") {
        api.running = false;
    }
    let (p, _) = probes(Ok(()), calm());
    let snap = check_once(&systemd, &c, &v, &p).await;
    let api1 = snap
        .report
        .components
        .iter()
        .find(|c| c.name == "unit:api@1");
    assert_eq!(
        api1.and_then(|c| c.reason.as_deref()),
        Some("stopped by hostctl stop")
    );
    assert!(!names(&snap).iter().any(|(n, _)| n.starts_with("instance:")));
    Ok(())
}

#[tokio::test]
async fn a_failing_instance_names_its_number() -> Res {
    let c = config(&CONFIG.replace("/run/api/{instance}/", "/run/api/sick{instance}/"))?;
    let (p, _) = probes(Ok(()), calm());
    let snap = check_once(&all_active(), &c, &view(&c), &p).await;
    let bad: Vec<_> = snap
        .report
        .components
        .iter()
        .filter(|c| c.status == HealthStatus::Unhealthy)
        .map(|c| (c.name.as_str(), c.reason.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        bad,
        [
            (
                "instance:api@1",
                "GET /health on /run/api/sick1/health.sock: HTTP 503"
            ),
            (
                "instance:api@2",
                "GET /health on /run/api/sick2/health.sock: HTTP 503"
            ),
        ]
    );
    Ok(())
}

async fn wait_for(snaps: &mut watch::Receiver<Snapshot>, what: impl Fn(&Snapshot) -> bool) -> Res {
    tokio::time::timeout(Duration::from_secs(10), snaps.wait_for(|s| what(s))).await??;
    Ok(())
}

#[tokio::test]
async fn signals_and_view_changes_trigger_rounds_reads_do_not() -> Res {
    // An hour between rounds: only a signal or a view change can bring the
    // snapshots this test waits for.
    let c = config(&format!("[health]\ncheck_interval = \"1h\"\n{CONFIG}"))?;
    let source = Arc::new(all_active());
    let (p, pg) = probes(Ok(()), calm());
    let (signal_tx, signal_rx) = watch::channel(0u64);
    let (view_tx, view_rx) = watch::channel(view(&c));
    let lifetime = Lifetime::new();
    let checker = Checker {
        units: Arc::clone(&source),
        current: CurrentConfig::fixed(Arc::clone(&c)),
        config: c,
        probe_deps: ProbeDeps {
            secrets: None,
            backup: None,
            jobs: watch::channel(Vec::new()).1,
            shipping: None,
        },
        probes: p,
    };
    let (publish, _) = channel();
    let mut snaps = start(checker, view_rx, signal_rx, publish, &lifetime)
        .await
        .snapshot();
    assert_eq!(snaps.borrow().report.status, HealthStatus::Healthy);

    // Reading the snapshot many times runs no check.
    for _ in 0..1000 {
        let _ = snaps.borrow().report.status;
    }
    assert_eq!(pg.1.load(Ordering::SeqCst), 1);

    source.set("redis-server.service", ActiveState::Failed);
    signal_tx.send_modify(|n| *n += 1);
    wait_for(&mut snaps, |s| s.report.status == HealthStatus::Unhealthy).await?;

    // Scaling to 3: the new instance appears without a signal.
    source.set("api@3.service", ActiveState::Active);
    view_tx.send_modify(|v| {
        if let Some(api) = v.desired.services.get_mut("api") {
            api.instances = Some(3);
        }
        v.events.push(hostd_api::UnitEvent {
            time: "t".into(),
            service: "redis".into(),
            unit: "redis-server.service".into(),
            result: "signal".into(),
            exit_status: Some(9),
            action: "restarting".into(),
        });
    });
    wait_for(&mut snaps, |s| {
        s.report.components.iter().any(|c| c.name == "unit:api@3")
    })
    .await?;
    Ok(())
}
