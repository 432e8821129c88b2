//! The deploy sequence against a fake host: the switch, the gate and the
//! automatic return, a failing migration, the recovery of an interrupted
//! switch, rollbacks, and a deploy that waits for another operation.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hostd_api::{DeployEvent, DeployOutcome, DeployRequest, RollbackRequest, TaskSpec};

use super::hooks::{Exit, Hook, HookError};
use super::*;
use crate::config::{Config, CurrentConfig, UnitName};
use crate::manager::{ManagerError, Progress};
use crate::ops::Holder;
use crate::systemd::{ExecContext, SystemdError};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

#[derive(Default)]
struct Seen {
    calls: Vec<String>,
    /// Releases whose instances never become healthy.
    bad: BTreeSet<String>,
    /// Hook phases that exit 4.
    failing: BTreeSet<String>,
}

/// Runs hooks and rollouts in memory; a rollout fails when `current`
/// names a bad release.
#[derive(Clone)]
struct FakeHost {
    seen: Arc<Mutex<Seen>>,
    release_dir: PathBuf,
}

impl FakeHost {
    fn with<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn calls(&self) -> Vec<String> {
        self.with(|s| std::mem::take(&mut s.calls))
    }

    fn current(&self) -> String {
        Releases::new(&self.release_dir)
            .current()
            .unwrap_or_default()
    }
}

impl DeployHost for FakeHost {
    async fn exec_context(&self, _unit: &UnitName) -> Result<ExecContext, SystemdError> {
        Ok(ExecContext::default())
    }

    fn run_to_end<'a>(
        &'a self,
        hook: &'a Hook<'a>,
        line: &'a mut (dyn FnMut(String) + Send),
    ) -> BoxFuture<'a, Result<Exit, HookError>> {
        async move {
            let fails = self.with(|s| {
                s.calls.push(format!("{} in {}", hook.phase, hook.version));
                s.failing.contains(hook.phase)
            });
            line(format!("running {}", hook.command));
            if fails {
                line("boom".into());
                return Ok(Exit {
                    result: "exit-code".into(),
                    code: Some(4),
                });
            }
            Ok(Exit {
                result: "success".into(),
                code: Some(0),
            })
        }
        .boxed()
    }

    async fn rollout(
        &self,
        service: &str,
        _gate: &Gate,
        _progress: Progress,
    ) -> Result<(), ManagerError> {
        let current = self.current();
        let bad = self.with(|s| {
            s.calls.push(format!("rollout {service} on {current}"));
            s.bad.contains(&current)
        });
        if bad {
            return Err(ManagerError::Unhealthy {
                unit: "api@1.service".into(),
                reason: "GET /health answered 503".into(),
                journal: "panic: no database".into(),
            });
        }
        Ok(())
    }
}

struct Setup {
    d: Deployer<FakeHost>,
    host: FakeHost,
    _dir: tempfile::TempDir,
}

fn setup() -> Res<Setup> {
    setup_with("unit = \"api@.service\"")
}

/// `api` declared by `declaration` (its unit, or an app's command).
fn setup_with(declaration: &str) -> Res<Setup> {
    let dir = tempfile::tempdir()?;
    let release_dir = dir.path().join("srv/api");
    let text = format!(
        "state_dir = \"{}\"\n[services.api]\n{declaration}\nrelease_dir = \"{}\"\n",
        dir.path().join("state").display(),
        release_dir.display()
    );
    let config = Arc::new(Config::parse(std::path::Path::new("hostd.toml"), &text)?);
    let host = FakeHost {
        seen: Arc::default(),
        release_dir,
    };
    let lifetime = Lifetime::new();
    let d = Deployer {
        artifacts: ArtifactStore::new(&config.state_dir),
        config: CurrentConfig::fixed(config),
        host: host.clone(),
        ops: crate::ops::spawn(&lifetime),
        lifetime,
    };
    Ok(Setup { d, host, _dir: dir })
}

/// A one-file release artifact, stored on the host; its digest.
async fn artifact(d: &Deployer<FakeHost>, version: &str) -> Res<String> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(version.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "VERSION", version.as_bytes())?;
    let tar = tar.into_inner()?;
    let digest = artifacts::digest_of(&tar);
    let compressed = zstd::encode_all(&tar[..], 3)?;
    let body =
        futures_util::stream::iter(vec![Ok::<_, axum::Error>(bytes::Bytes::from(compressed))]);
    d.artifacts.receive(&digest, body).await?;
    Ok(digest)
}

fn request(version: &str, artifact: String) -> DeployRequest {
    DeployRequest {
        unit: "api@.service".into(),
        version: version.into(),
        artifact,
        health: HealthGate {
            path: "/health".into(),
            timeout_seconds: 5,
        },
        hooks: hostd_api::DeployHooks::default(),
        hook_timeout_seconds: 60,
        pre_switch_tasks: Vec::new(),
        keep: 5,
        requested_by: "ann@laptop".into(),
        lock_wait_seconds: 0,
    }
}

/// Submits `req` and reads its events to the end.
async fn deploy(d: &Deployer<FakeHost>, req: DeployRequest) -> Res<Vec<DeployEvent>> {
    let target = run::check_deploy(d, &req)?;
    let (events, mut rx) = Events::new();
    d.ops
        .submit(run::deploy(
            d.clone(),
            target,
            req,
            crate::http::Peer::default(),
            events,
        ))
        .await?;
    let mut all = Vec::new();
    while let Some(e) = rx.recv().await {
        all.push(e);
    }
    Ok(all)
}

fn outcome(events: &[DeployEvent]) -> Option<(DeployOutcome, Option<String>)> {
    events.iter().rev().find_map(|e| match e {
        DeployEvent::Finished { outcome, error, .. } => Some((*outcome, error.clone())),
        _ => None,
    })
}

async fn deployed(s: &Setup, version: &str) -> Res {
    let digest = artifact(&s.d, version).await?;
    let events = deploy(&s.d, request(version, digest)).await?;
    assert_eq!(outcome(&events), Some((DeployOutcome::Ok, None)));
    Ok(())
}

fn ledger(s: &Setup) -> Res<Vec<(String, String, String)>> {
    Ok(Ledger::new(&s.d.config.get().state_dir, "api")
        .entries()?
        .into_iter()
        .map(|e| (e.action, e.version, e.result))
        .collect())
}

#[tokio::test]
async fn a_deploy_unpacks_runs_its_migration_switches_and_rolls_out() -> Res {
    let s = setup()?;
    let digest = artifact(&s.d, "v1").await?;
    let mut req = request("v1", digest);
    req.pre_switch_tasks = vec![TaskSpec {
        name: "migrate".into(),
        command: "bin/migrate".into(),
        timeout_seconds: 60,
    }];
    let events = deploy(&s.d, req).await?;
    assert_eq!(outcome(&events), Some((DeployOutcome::Ok, None)));
    assert_eq!(s.host.calls(), ["task migrate in v1", "rollout api on v1"]);
    assert_eq!(s.host.current(), "v1");
    let unpacked = s.host.release_dir.join("releases/v1/VERSION");
    assert_eq!(std::fs::read_to_string(unpacked)?, "v1");
    assert!(marker::file(&s.d.config.get().state_dir).load()?.is_none());
    assert_eq!(ledger(&s)?, [("deploy".into(), "v1".into(), "ok".into())]);
    Ok(())
}

#[tokio::test]
async fn an_unhealthy_release_returns_to_the_previous_one_by_itself() -> Res {
    let s = setup()?;
    deployed(&s, "v1").await?;
    s.host.calls();
    s.host.with(|h| h.bad.insert("v2".into()));
    let digest = artifact(&s.d, "v2").await?;
    let events = deploy(&s.d, request("v2", digest)).await?;
    let (o, error) = outcome(&events).ok_or("no end")?;
    assert_eq!(o, DeployOutcome::RolledBack);
    let error = error.unwrap_or_default();
    assert!(error.contains("api@1.service did not become healthy: GET /health answered 503"));
    assert!(error.contains("panic: no database"), "{error}");
    assert!(error.ends_with("rolled back: v1 serves again"), "{error}");
    assert_eq!(s.host.calls(), ["rollout api on v2", "rollout api on v1"]);
    assert_eq!(s.host.current(), "v1");
    assert!(marker::file(&s.d.config.get().state_dir).load()?.is_none());
    let last = ledger(&s)?.pop();
    assert_eq!(
        last,
        Some(("deploy".into(), "v2".into(), "rolled_back".into()))
    );
    Ok(())
}

#[tokio::test]
async fn an_apps_failed_first_release_leaves_it_not_deployed() -> Res {
    let s = setup_with("command = \"bin/api\"\nport = 8300")?;
    s.host.with(|h| h.bad.insert("v1".into()));
    let digest = artifact(&s.d, "v1").await?;
    let mut req = request("v1", digest);
    req.unit = "api".into();
    let events = deploy(&s.d, req).await?;
    let (o, error) = outcome(&events).ok_or("no end")?;
    assert_eq!(o, DeployOutcome::RolledBack);
    let error = error.unwrap_or_default();
    assert!(
        error.ends_with("rolled back: api is not deployed again (there was no release before this one); nothing of it runs"),
        "{error}"
    );
    // The second rollout is the manager stopping what v1 started.
    assert_eq!(s.host.calls(), ["rollout api on v1", "rollout api on "]);
    assert_eq!(s.host.current(), "", "current is gone");
    Ok(())
}

#[tokio::test]
async fn when_the_way_back_fails_too_the_deploy_says_both() -> Res {
    let s = setup()?;
    deployed(&s, "v1").await?;
    s.host.with(|h| {
        h.bad.insert("v1".into());
        h.bad.insert("v2".into());
    });
    let digest = artifact(&s.d, "v2").await?;
    let events = deploy(&s.d, request("v2", digest)).await?;
    let (o, error) = outcome(&events).ok_or("no end")?;
    assert_eq!(o, DeployOutcome::Failed);
    assert!(
        error
            .unwrap_or_default()
            .contains("and the return to the previous release failed too"),
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_migration_stops_before_the_switch() -> Res {
    let s = setup()?;
    deployed(&s, "v1").await?;
    s.host.calls();
    s.host.with(|h| h.failing.insert("task migrate".into()));
    let digest = artifact(&s.d, "v2").await?;
    let mut req = request("v2", digest);
    req.pre_switch_tasks = vec![TaskSpec {
        name: "migrate".into(),
        command: "bin/migrate".into(),
        timeout_seconds: 60,
    }];
    let events = deploy(&s.d, req).await?;
    let (o, error) = outcome(&events).ok_or("no end")?;
    assert_eq!(o, DeployOutcome::Failed);
    let error = error.unwrap_or_default();
    assert!(error.contains("exit status 4"), "{error}");
    assert!(error.contains("boom"), "{error}");
    assert!(error.ends_with("nothing changed, the old release still serves"));
    assert_eq!(s.host.calls(), ["task migrate in v2"]);
    assert_eq!(s.host.current(), "v1");
    Ok(())
}

#[tokio::test]
async fn an_interrupted_switch_is_undone_at_start_and_reported() -> Res {
    let s = setup()?;
    deployed(&s, "v1").await?;
    deployed(&s, "v2").await?;
    s.host.calls();
    // hostd died after switching to v2 and before its instances were
    // healthy: the marker says where it came from.
    let m = marker::Marker {
        service: "api".into(),
        from: Some("v1".into()),
        to: "v2".into(),
        requested_by: "ann@laptop".into(),
        started: "2026-12-07T00:00:00Z".into(),
    };
    marker::file(&s.d.config.get().state_dir).save(&m)?;
    let op = marker::recovery(s.d.clone()).ok_or("no recovery")?;
    s.d.ops.submit(op).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.d.ops.view().borrow().recovered.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no recovery note");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(s.host.current(), "v1");
    assert_eq!(s.host.calls(), ["rollout api on v1"]);
    let note = s.d.ops.view().borrow().recovered.clone();
    assert_eq!(
        note,
        ["hostd found the deploy of api v2 interrupted at its start and returned to v1"]
    );
    let last = ledger(&s)?.pop();
    assert_eq!(
        last,
        Some(("recovery".into(), "v2".into(), "rolled_back".into()))
    );
    assert!(marker::recovery(s.d.clone()).is_none());
    Ok(())
}

#[tokio::test]
async fn a_rollback_returns_to_the_previous_good_release_and_refuses_without_one() -> Res {
    let s = setup()?;
    deployed(&s, "v1").await?;
    let req = RollbackRequest {
        unit: "api".into(),
        version: None,
        health: HealthGate {
            path: "/health".into(),
            timeout_seconds: 5,
        },
        requested_by: "ann@laptop".into(),
        lock_wait_seconds: 0,
    };
    let none = rollback::check_rollback(&s.d, &req);
    assert!(matches!(none, Err(DeployError::NoPrevious { .. })));
    deployed(&s, "v2").await?;
    s.host.calls();
    let (target, version) = rollback::check_rollback(&s.d, &req)?;
    assert_eq!(version, "v1");
    let (events, mut rx) = Events::new();
    let op = rollback::rollback(
        s.d.clone(),
        target,
        version,
        req,
        crate::http::Peer::default(),
        events,
    );
    s.d.ops.submit(op).await?;
    let mut all = Vec::new();
    while let Some(e) = rx.recv().await {
        all.push(e);
    }
    assert_eq!(outcome(&all), Some((DeployOutcome::Ok, None)));
    assert_eq!(s.host.current(), "v1");
    assert_eq!(s.host.calls(), ["rollout api on v1"]);
    Ok(())
}

#[tokio::test]
async fn a_deploy_waits_for_the_operation_running_or_is_refused_naming_it() -> Res {
    let s = setup()?;
    let digest = artifact(&s.d, "v1").await?;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let busy = crate::ops::Operation::new(
        Holder::new("restore latest", "bob@desk"),
        Duration::ZERO,
        async move {
            let _ = released.await;
        },
    );
    s.d.ops.submit(busy).await?;
    let refused = deploy(&s.d, request("v1", digest.clone())).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().starts_with("the host's operations lock is held: `restore latest` by bob@desk")),
        "{:?}",
        refused.map(|_| ())
    );
    let mut waiting = request("v1", digest);
    waiting.lock_wait_seconds = 60;
    let target = run::check_deploy(&s.d, &waiting)?;
    let (events, mut rx) = Events::new();
    // Queued behind the restore: accepted, not started.
    s.d.ops
        .submit(run::deploy(
            s.d.clone(),
            target,
            waiting,
            crate::http::Peer::default(),
            events,
        ))
        .await?;
    assert!(s.host.current().is_empty());
    let _ = release.send(());
    let mut all = Vec::new();
    while let Some(e) = rx.recv().await {
        all.push(e);
    }
    assert!(matches!(
        all.first(),
        Some(DeployEvent::Waiting { holder }) if holder.contains("restore latest")
    ));
    assert_eq!(outcome(&all), Some((DeployOutcome::Ok, None)));
    assert_eq!(s.host.current(), "v1");
    Ok(())
}

#[tokio::test]
async fn numbers_beyond_their_bounds_are_refused_before_anything_runs() -> Res {
    let s = setup()?;
    let digest = artifact(&s.d, "v1").await?;
    for (what, req) in [
        ("lock_wait_seconds", {
            let mut r = request("v1", digest.clone());
            r.lock_wait_seconds = u64::MAX;
            r
        }),
        ("health.timeout_seconds", {
            let mut r = request("v1", digest.clone());
            r.health.timeout_seconds = u64::MAX;
            r
        }),
        ("hook_timeout_seconds", {
            let mut r = request("v1", digest.clone());
            r.hook_timeout_seconds = u64::MAX;
            r
        }),
    ] {
        let refused = run::check_deploy(&s.d, &req);
        assert!(
            matches!(&refused, Err(DeployError::OutOfRange(e)) if e.what == what),
            "{what}: {:?}",
            refused.map(|_| ())
        );
        assert_eq!(
            crate::http::Refusal::http_status(&DeployError::from(hostd_api::limits::OutOfRange {
                what,
                value: u64::MAX,
                max: 1
            })),
            422
        );
    }
    assert!(s.host.current().is_empty());
    Ok(())
}

mod hostile_requests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
    use serde_json::json;

    use super::*;
    use crate::request_strategies::{body, send};

    const DEPLOY: &[&str] = &[
        "unit",
        "version",
        "artifact",
        "health",
        "hooks",
        "hook_timeout_seconds",
        "pre_switch_tasks",
        "keep",
        "requested_by",
        "lock_wait_seconds",
    ];
    const ROLLBACK: &[&str] = &[
        "unit",
        "version",
        "health",
        "requested_by",
        "lock_wait_seconds",
    ];
    const TASK: &[&str] = &["unit", "task", "command", "timeout_seconds", "requested_by"];

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("api".to_owned()),
            Just("api@.service".to_owned()),
            Just("v1".to_owned()),
            ".{0,16}",
        ]
    }

    /// Deploy requests of the right shape with any values in them.
    fn shaped_deploy(digest: String) -> impl Strategy<Value = Vec<u8>> {
        let artifact = prop_oneof![Just(digest), ".{0,70}"];
        (
            (word(), word(), artifact, ".{0,12}"),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u32>()),
            (word(), ".{0,20}", any::<u64>()),
        )
            .prop_map(
                |((unit, version, artifact, path), (t, h, w, keep), (n, c, tt))| {
                    serde_json::to_vec(&json!({
                        "unit": unit, "version": version, "artifact": artifact,
                        "health": {"path": path, "timeout_seconds": t},
                        "hook_timeout_seconds": h, "lock_wait_seconds": w, "keep": keep,
                        "pre_switch_tasks": [{"name": n, "command": c, "timeout_seconds": tt}],
                    }))
                    .unwrap_or_default()
                },
            )
    }

    fn answered(
        rt: &tokio::runtime::Runtime,
        router: &axum::Router,
        uri: &str,
        body: Vec<u8>,
    ) -> Result<(), TestCaseError> {
        let status = rt
            .block_on(send(router.clone(), "POST", uri, body))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(status < 500, "{uri} answered {status}");
        Ok(())
    }

    #[test]
    fn deploy_routes_answer_any_body_without_a_panic() -> Res {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (s, digest) = rt.block_on(async {
            let s = setup()?;
            let digest = artifact(&s.d, "v1").await?;
            Ok::<_, Box<dyn std::error::Error>>((s, digest))
        })?;
        let router = http::routes(s.d.clone());
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 256,
            ..RunnerConfig::default()
        });
        for (uri, fields) in [
            ("/v1/deploy", DEPLOY),
            ("/v1/rollback", ROLLBACK),
            ("/v1/tasks/run", TASK),
        ] {
            runner.run(&body(fields), |b| answered(&rt, &router, uri, b))?;
        }
        runner.run(&shaped_deploy(digest), |b| {
            answered(&rt, &router, "/v1/deploy", b)
        })?;
        Ok(())
    }
}

#[tokio::test]
async fn two_deploys_of_one_version_never_replace_the_release_that_serves() -> Res {
    let s = setup()?;
    deployed(&s, "v1").await?;
    let first = artifact(&s.d, "v2").await?;
    let second = artifact(&s.d, "v2 built again").await?;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let busy = crate::ops::Operation::new(
        Holder::new("restore latest", "bob@desk"),
        Duration::ZERO,
        async move {
            let _ = released.await;
        },
    );
    s.d.ops.submit(busy).await?;
    // Both pass their checks now and wait; the first to run makes v2
    // current, so the second must not unpack over it.
    let mut rxs = Vec::new();
    for digest in [first, second] {
        let mut req = request("v2", digest);
        req.lock_wait_seconds = 60;
        let target = run::check_deploy(&s.d, &req)?;
        let (events, rx) = Events::new();
        s.d.ops
            .submit(run::deploy(
                s.d.clone(),
                target,
                req,
                crate::http::Peer::default(),
                events,
            ))
            .await?;
        rxs.push(rx);
    }
    let _ = release.send(());
    let mut outcomes = Vec::new();
    for mut rx in rxs {
        let mut all = Vec::new();
        while let Some(e) = rx.recv().await {
            all.push(e);
        }
        outcomes.push(outcome(&all));
    }
    assert_eq!(outcomes[0], Some((DeployOutcome::Ok, None)));
    let (o, error) = outcomes[1].clone().ok_or("no end")?;
    assert_eq!(o, DeployOutcome::Failed);
    let error = error.unwrap_or_default();
    assert!(
        error.contains("version v2 is installed from another artifact"),
        "{error}"
    );
    assert_eq!(s.host.current(), "v2");
    let served = std::fs::read_to_string(s.host.release_dir.join("releases/v2/VERSION"))?;
    assert_eq!(served, "v2");
    Ok(())
}
