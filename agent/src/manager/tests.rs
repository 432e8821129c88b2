//! The manager's policies against a fake systemd: what it starts at
//! start, how it restarts a crashed unit and when it gives up, the rolling
//! restart and its gate, and a scale that cannot be healthy undone.

use std::collections::BTreeSet;
use std::sync::Mutex;

use futures_util::FutureExt;
use hostd_api::ActiveState;

use super::probe::{GateRefusal, HealthGate};
use super::*;
use crate::systemd::fake::FakeSystemd;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Health sockets that answer 503; every other one is healthy.
#[derive(Default)]
struct FakeGate(Mutex<BTreeSet<String>>);

impl FakeGate {
    fn fail(&self, socket: &str) {
        self.0.lock().map(|mut s| s.insert(socket.to_owned())).ok();
    }
}

impl HealthGate for FakeGate {
    fn ask<'a>(
        &'a self,
        socket: &'a crate::checks::InstanceAddress,
        path: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), GateRefusal>> {
        let socket = socket.to_string();
        let failing = self.0.lock().map(|s| s.contains(&socket)).unwrap_or(true);
        async move {
            if failing {
                return Err(GateRefusal::Status {
                    path: path.to_owned(),
                    status: hyper::StatusCode::SERVICE_UNAVAILABLE,
                    reason: "database unreachable".into(),
                });
            }
            Ok(())
        }
        .boxed()
    }
}

/// Records what the front was told, newest last; every drain is instant.
#[derive(Default)]
struct FakeFront(Mutex<Vec<String>>);

impl FakeFront {
    fn said(&self) -> Vec<String> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl crate::front::client::Routing for FakeFront {
    fn route<'a>(
        &'a self,
        service: &'a str,
        ports: &'a [u16],
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::front::client::RoutingError>> {
        if let Ok(mut s) = self.0.lock() {
            s.push(format!("route {service} {ports:?}"));
        }
        futures_util::future::ready(Ok(())).boxed()
    }

    fn drain<'a>(
        &'a self,
        ports: &'a [u16],
        _bound: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<bool, crate::front::client::RoutingError>> {
        if let Ok(mut s) = self.0.lock() {
            s.push(format!("drain {ports:?}"));
        }
        futures_util::future::ready(Ok(true)).boxed()
    }
}

struct Host {
    manager: ManagerHandle,
    systemd: FakeSystemd,
    gate: Arc<FakeGate>,
    front: Arc<FakeFront>,
    lifetime: Lifetime,
    _state: tempfile::TempDir,
}

const API: &str = "[services.api]\nunit = \"api@.service\"\ninstances = 2\nmax_instances = 4\n\
    health_socket = \"/run/api/{instance}/health.sock\"\n\
    [services.api.restart]\nbackoff_initial = \"10ms\"\nbackoff_max = \"40ms\"\n\
    max_restarts = 3\nwindow = \"1h\"\n\
    [services.redis]\nunit = \"redis-server.service\"\n\
    [services.redis.restart]\npolicy = \"never\"\n";

/// A manager over a fresh fake, with a stand-in for the health checker
/// that answers every change with a new round, as the real one does.
async fn host(config: &str) -> Res<Host> {
    let state = tempfile::tempdir()?;
    let text = format!("state_dir = \"{}\"\n{config}", state.path().display());
    let config = Arc::new(Config::parse(std::path::Path::new("hostd.toml"), &text)?);
    let systemd = FakeSystemd::default();
    let gate = Arc::new(FakeGate::default());
    let routing = Arc::new(FakeFront::default());
    let lifetime = Lifetime::new();
    let (publish, snapshots) = crate::health::channel();
    let deps = Deps {
        units: systemd.clone(),
        gate: Arc::clone(&gate) as Arc<dyn probe::HealthGate>,
        routing: Arc::clone(&routing) as Arc<dyn crate::front::client::Routing>,
        secrets: watch::channel(SecretsState::default()).1,
        snapshots,
    };
    let manager = spawn(config, deps, &lifetime).await?;
    let mut changes = manager.changes();
    let ending = lifetime.clone();
    lifetime.spawn("fake health checker", async move {
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = ending.ending() => return,
            }
            publish.send_modify(|s| s.round_started = Instant::now());
        }
    });
    Ok(Host {
        manager,
        systemd,
        gate,
        front: routing,
        lifetime,
        _state: state,
    })
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn at_start_every_wanted_unit_is_brought_up_and_the_desired_state_kept() -> Res {
    let h = host(API).await?;
    until("every service is up", || {
        ["api@1.service", "api@2.service", "redis-server.service"]
            .iter()
            .all(|u| h.systemd.active_state(u) == ActiveState::Active)
    })
    .await;
    let view = h.manager.view().borrow().clone();
    assert_eq!(
        view.desired.services.get("api").and_then(|d| d.instances),
        Some(2)
    );
    h.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn a_crashed_unit_is_restarted_after_its_backoff_until_the_policy_gives_up() -> Res {
    let h = host(API).await?;
    until("api@1 is up", || {
        h.systemd.active_state("api@1.service") == ActiveState::Active
    })
    .await;
    let restarts = || {
        h.manager
            .view()
            .borrow()
            .restarts
            .get("api")
            .copied()
            .unwrap_or(0)
    };
    for n in 1..=3 {
        h.systemd.crash("api@1.service", 2);
        until("the crash is restarted", || restarts() == n).await;
        assert_eq!(h.systemd.active_state("api@1.service"), ActiveState::Active);
    }
    // The fourth failure within the window is one too many.
    h.systemd.crash("api@1.service", 2);
    until("hostd gives up", || {
        h.manager
            .view()
            .borrow()
            .events
            .iter()
            .any(|e| e.action.contains("gave up"))
    })
    .await;
    let view = h.manager.view().borrow().clone();
    let first = view
        .events
        .first()
        .map(|e| (e.result.clone(), e.exit_status));
    assert_eq!(first, Some(("exit-code".to_owned(), Some(2))));
    assert!(
        view.events[0]
            .action
            .starts_with("failed; restarting in 10ms")
    );
    assert_eq!(view.failures.get("api"), Some(&4));
    assert_eq!(restarts(), 3);
    assert_eq!(h.systemd.active_state("api@1.service"), ActiveState::Failed);
    h.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn a_unit_whose_policy_is_never_stays_failed() -> Res {
    let h = host(API).await?;
    until("redis is up", || {
        h.systemd.active_state("redis-server.service") == ActiveState::Active
    })
    .await;
    h.systemd.crash("redis-server.service", 1);
    until("the failure is recorded", || {
        !h.manager.view().borrow().events.is_empty()
    })
    .await;
    let event = h.manager.view().borrow().events[0].clone();
    assert_eq!(
        event.action,
        "failed; not restarted (restart.policy = never)"
    );
    assert_eq!(
        h.systemd.active_state("redis-server.service"),
        ActiveState::Failed
    );
    h.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn a_rollout_restarts_one_instance_at_a_time_and_stops_at_the_first_unhealthy() -> Res {
    let h = host(API).await?;
    until("api is up", || {
        h.systemd.active_state("api@2.service") == ActiveState::Active
    })
    .await;
    h.systemd.clear_jobs();
    let gate = Gate {
        path: "/health".into(),
        timeout: Duration::from_millis(200),
    };
    let (progress, mut steps) = mpsc::unbounded_channel();
    h.manager
        .rollout("api".into(), gate.clone(), progress)
        .await?;
    assert_eq!(
        h.systemd.jobs(),
        ["restart api@1.service", "restart api@2.service"]
    );
    let mut said = Vec::new();
    while let Ok(e) = steps.try_recv() {
        if let hostd_api::DeployEvent::Step { step } = e {
            said.push(step);
        }
    }
    assert_eq!(said, ["restart api@1.service", "restart api@2.service"]);

    h.systemd.clear_jobs();
    h.gate.fail("/run/api/1/health.sock");
    let (progress, _) = mpsc::unbounded_channel();
    let err = h.manager.rollout("api".into(), gate, progress).await;
    let text = err.map(|_| ()).map_err(|e| e.to_string());
    assert!(
        matches!(&text, Err(t) if t.starts_with("api@1.service did not become healthy: GET /health answered 503 Service Unavailable: database unreachable after 0s")
            && t.contains("journal of api@1.service")),
        "{text:?}"
    );
    // api@2 keeps serving the old release.
    assert_eq!(h.systemd.jobs(), ["restart api@1.service"]);
    h.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn a_scale_that_cannot_be_healthy_changes_nothing() -> Res {
    let h = host(API).await?;
    until("api is up", || {
        h.systemd.active_state("api@2.service") == ActiveState::Active
    })
    .await;
    h.systemd.fail_starts("api@3.service", 1);
    let err = h.manager.scale("api".into(), 3).await;
    assert!(
        matches!(&err, Err(ManagerError::Job(JobError::Failed { unit, .. })) if unit == "api@3.service"),
        "{err:?}"
    );
    let view = h.manager.view().borrow().clone();
    assert_eq!(
        view.desired.services.get("api").and_then(|d| d.instances),
        Some(2)
    );
    let saved = desired_file(h._state.path()).load()?;
    assert_eq!(
        saved.and_then(|d| d.services.get("api").and_then(|s| s.instances)),
        Some(2)
    );
    assert_ne!(h.systemd.active_state("api@3.service"), ActiveState::Active);

    let ok = h.manager.scale("api".into(), 3).await?;
    assert_eq!(ok.units.len(), 3);
    assert_eq!(h.systemd.active_state("api@3.service"), ActiveState::Active);
    h.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn bad_requests_change_nothing_and_say_what_would_do() -> Res {
    let h = host(API).await?;
    let unknown = h.manager.action("web".into(), ServiceAction::Stop).await;
    assert_eq!(
        unknown.map(|_| ()).map_err(|e| e.to_string()),
        Err("no service named `web`; configured services: api, redis".into())
    );
    let range = h.manager.scale("api".into(), 5).await;
    assert!(matches!(
        range,
        Err(ManagerError::OutOfRange { max: 4, .. })
    ));
    let plain = h.manager.scale("redis".into(), 2).await;
    assert!(matches!(plain, Err(ManagerError::NotInstanced { .. })));
    h.lifetime.finish(Duration::from_secs(5)).await;
    // The task is gone: calls say so instead of hanging.
    let gone = h.manager.action("api".into(), ServiceAction::Start).await;
    assert!(matches!(gone, Err(ManagerError::Gone)));
    Ok(())
}

#[test]
fn service_routes_answer_any_request_without_a_panic() -> Res {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

    use crate::request_strategies::{body, send};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let h = rt.block_on(host(API))?;
    let router = http::routes(h.manager.clone());
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 128,
        ..RunnerConfig::default()
    });
    let scale = (
        prop_oneof![Just("api".to_owned()), "[a-z%]{0,8}"],
        body(&["instances"]),
    );
    runner.run(&scale, |(name, b)| {
        let uri = format!("/v1/services/{name}/instances");
        let status = rt
            .block_on(send(router.clone(), "PUT", &uri, b))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(status < 500, "{uri} answered {status}");
        Ok(())
    })?;
    let action = ("[a-z%@.]{0,10}", "[a-z]{0,8}");
    runner.run(&action, |(name, act)| {
        let uri = format!("/v1/services/{name}/{act}");
        let status = rt
            .block_on(send(router.clone(), "POST", &uri, Vec::new()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(status < 500, "{uri} answered {status}");
        Ok(())
    })?;
    rt.block_on(h.lifetime.finish(Duration::from_secs(5)));
    Ok(())
}

#[tokio::test]
async fn a_stop_that_fails_is_not_recorded_as_one() -> Res {
    let h = host(API).await?;
    until("redis is up", || {
        h.systemd.active_state("redis-server.service") == ActiveState::Active
    })
    .await;
    h.systemd.fail_stops("redis-server.service", 1);
    let stopped = h.manager.action("redis".into(), ServiceAction::Stop).await;
    assert!(stopped.is_err(), "{stopped:?}");
    let running = |h: &Host| {
        h.manager
            .view()
            .borrow()
            .desired
            .services
            .get("redis")
            .map(|d| d.running)
    };
    assert_eq!(running(&h), Some(true));
    let saved = desired_file(h._state.path()).load()?;
    assert_eq!(
        saved.and_then(|d| d.services.get("redis").map(|s| s.running)),
        Some(true)
    );
    h.manager
        .action("redis".into(), ServiceAction::Stop)
        .await?;
    assert_eq!(running(&h), Some(false));
    h.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn an_app_waits_for_its_first_release_then_is_gated_on_its_port() -> Res {
    let releases = tempfile::tempdir()?;
    let web = format!(
        "[services.web]\ncommand = \"bin/web\"\nport = 8300\nhealth_path = \"/up\"\n\
         health_timeout = \"1s\"\nrelease_dir = \"{}\"\n",
        releases.path().display()
    );
    let h = host(&format!("{API}{web}")).await?;
    until("api@1 is up", || {
        h.systemd.active_state("api@1.service") == ActiveState::Active
    })
    .await;
    let start = h.manager.action("web".into(), ServiceAction::Start).await;
    assert_eq!(
        start.map(|_| ()).map_err(|e| e.to_string()),
        Err("web is not deployed yet: `hostctl deploy web` installs its first release and starts it".into())
    );
    assert!(
        !h.systemd.jobs().iter().any(|j| j.contains("hostd-app-web")),
        "started before its first release: {:?}",
        h.systemd.jobs()
    );

    std::os::unix::fs::symlink("releases/1", releases.path().join("current"))?;
    h.gate.fail("127.0.0.1:18301");
    let refused = h.manager.action("web".into(), ServiceAction::Restart).await;
    let said = refused.map(|_| ()).map_err(|e| e.to_string());
    assert!(
        said.as_ref()
            .is_err_and(|e| e.contains("hostd-app-web@1.service") && e.contains("GET /up")),
        "{said:?}"
    );
    h.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn an_app_behind_the_front_is_replaced_blue_green_and_a_failed_set_never_serves() -> Res {
    let releases = tempfile::tempdir()?;
    std::os::unix::fs::symlink("releases/1", releases.path().join("current"))?;
    let web = format!(
        "[services.web]\ncommand = \"bin/web\"\nport = 3000\ninstances = 2\n\
         health_timeout = \"1s\"\nrelease_dir = \"{}\"\n",
        releases.path().display()
    );
    let h = host(&web).await?;
    until("web@1 and web@2 are up", || {
        ["hostd-app-web@1.service", "hostd-app-web@2.service"]
            .iter()
            .all(|u| h.systemd.active_state(u) == ActiveState::Active)
    })
    .await;
    until("the front routes to them", || {
        h.front.said().last().map(String::as_str) == Some("route web [13001, 13002]")
    })
    .await;
    h.systemd.clear_jobs();
    let before = h.front.said().len();

    h.manager
        .action("web".into(), ServiceAction::Restart)
        .await?;
    assert_eq!(
        h.front.said()[before..],
        [
            "route web [13001, 13002]",
            "route web [13101, 13102]",
            "drain [13001, 13002]"
        ],
        "the new set takes over the front, then the old one drains"
    );
    assert_eq!(
        h.systemd.jobs(),
        [
            "start hostd-app-web@101.service",
            "start hostd-app-web@102.service",
            "stop hostd-app-web@1.service",
            "stop hostd-app-web@2.service",
        ]
    );

    // The next set fails its gate: it is stopped and never routed to.
    h.gate.fail("127.0.0.1:13002");
    h.systemd.clear_jobs();
    let before = h.front.said().len();
    let failed = h.manager.action("web".into(), ServiceAction::Restart).await;
    assert!(
        matches!(failed, Err(ManagerError::Unhealthy { .. })),
        "{failed:?}"
    );
    assert_eq!(
        h.front.said()[before..],
        ["route web [13101, 13102]"],
        "still the serving set"
    );
    assert_eq!(
        h.systemd.jobs(),
        [
            "start hostd-app-web@1.service",
            "start hostd-app-web@2.service",
            "stop hostd-app-web@1.service",
            "stop hostd-app-web@2.service",
        ]
    );
    for serving in ["hostd-app-web@101.service", "hostd-app-web@102.service"] {
        assert_eq!(h.systemd.active_state(serving), ActiveState::Active);
    }
    h.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test]
async fn a_new_declared_count_scales_without_restarting_and_a_removed_service_is_let_go() -> Res {
    let h = host(API).await?;
    until("api is up", || {
        h.systemd.active_state("api@2.service") == ActiveState::Active
    })
    .await;
    // An operator's scale, then a configuration whose count changed: the
    // declaration wins.
    h.manager.scale("api".into(), 4).await?;
    h.systemd.clear_jobs();
    let state = h._state.path().display().to_string();
    let text = format!(
        "state_dir = \"{state}\"\n{}",
        API.replace("instances = 2", "instances = 3")
            .split("[services.redis]")
            .next()
            .unwrap_or_default()
    );
    let config = Arc::new(Config::parse(std::path::Path::new("hostd.toml"), &text)?);
    let (progress, _steps) = tokio::sync::mpsc::unbounded_channel();
    h.manager
        .reconfigure(config, Vec::new(), vec!["api".into()], progress)
        .await?;
    assert_eq!(h.systemd.jobs(), ["stop api@4.service"]);
    let view = h.manager.view().borrow().clone();
    assert_eq!(
        view.desired.services.get("api").and_then(|d| d.instances),
        Some(3)
    );
    // Redis, no longer declared, is neither stopped nor watched over.
    assert!(!view.desired.services.contains_key("redis"));
    assert_eq!(
        h.systemd.active_state("redis-server.service"),
        ActiveState::Active
    );
    h.lifetime.finish(Duration::from_secs(5)).await;
    Ok(())
}
