//! How `apply` goes host by host once it goes ahead: in batches, as
//! root, each host's progress shown, the first failure stopping the rest.

use hostd_api::{ApplyEvent, ApplyOutcome, ApplyRecord};

use super::tests::{PLAN_BODY, SOURCE, TestResult, changing_plan, ok, plan_settings};
use super::*;
use crate::exit::CommandError;
use crate::fake_hosts::{FakeHosts, stream, text};
use crate::targets::TargetError;

/// What every host's apply request carries, as the fake logs it.
pub(super) const APPLY_BODY: &str = r#"{"text":"[apps.web]\ncommand = \"bin/web --port 8080\"\n","source":"hostd/production.toml","requested_by":"op@laptop","lock_wait_seconds":0}"#;

pub(super) fn settings(fake: &FakeHosts, batch_size: usize) -> Result<ApplySettings, TargetError> {
    Ok(ApplySettings {
        plan: plan_settings(fake, false)?,
        batch_size,
        yes: true,
        dry_run: false,
        lock_wait_seconds: 0,
        health_timeout_seconds: None,
        timeout: Duration::from_secs(10),
        requested_by: "op@laptop".into(),
        stdin_tty: false,
    })
}

pub(super) struct Ran {
    pub result: Result<(), HostConfigError>,
    pub out: String,
    pub err: String,
    /// The question asked, if one was.
    pub asked: Option<String>,
}

pub(super) async fn run(fake: &FakeHosts, s: &ApplySettings, answer: &str) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut asked = None;
    let ask = |q: &str| {
        asked = Some(q.to_owned());
        Ok(answer.to_owned())
    };
    let result = apply_with(&fake.transport, s, &mut out, &mut err, ask).await;
    Ran {
        result,
        out: text(&out),
        err: text(&err),
        asked,
    }
}

/// The apply requests the hosts got, in the order they came.
pub(super) fn applies(fake: &FakeHosts) -> Vec<String> {
    let mut all = fake.requests_sorted();
    all.retain(|l| !l.contains("/v1/config/plan"));
    all
}

/// The ledger's record, as the apply of the changing plan ends.
fn record(outcome: ApplyOutcome, error: Option<&str>) -> ApplyRecord {
    ApplyRecord {
        actions: changing_plan().actions,
        seconds: 1.5,
        ..super::tests::record(outcome, error)
    }
}

pub(super) fn finished(outcome: ApplyOutcome, error: Option<&str>) -> Vec<ApplyEvent> {
    let step = |s: &str| ApplyEvent::Step { step: s.into() };
    let mut events = vec![
        step("write config"),
        ApplyEvent::StepDone {
            step: "write config".into(),
            seconds: 0.25,
        },
        step("restart web"),
    ];
    if error.is_none() {
        events.push(ApplyEvent::StepDone {
            step: "restart web".into(),
            seconds: 1.0,
        });
    }
    events.push(ApplyEvent::Finished {
        record: record(outcome, error),
    });
    events
}

const ROLLED_BACK: &str =
    "web did not report healthy within 2m; the previous configuration runs again";

#[tokio::test]
async fn apply_stops_after_the_batch_with_a_failed_host() -> TestResult {
    let plan = ok(&changing_plan())?;
    let applied = stream(&finished(ApplyOutcome::Applied, None));
    let rolled_back = stream(&finished(ApplyOutcome::RolledBack, Some(ROLLED_BACK)));
    let answers = [
        ("a", ""),
        ("b", ""),
        ("c", plan.as_str()),
        ("d", plan.as_str()),
    ];
    let fake = FakeHosts::new("apply-batch", &answers, "{}")?
        .answering_in_turn("a", &[&plan, &applied])
        .answering_in_turn("b", &[&plan, &rolled_back]);
    let ran = run(&fake, &settings(&fake, 2)?, "").await;
    // The whole first batch ran; the second was never asked.
    assert_eq!(
        applies(&fake),
        [
            format!("a POST /v1/config/apply {APPLY_BODY}"),
            format!("b POST /v1/config/apply {APPLY_BODY}")
        ]
    );
    let e = ran.result.err().ok_or("expected a failure")?;
    assert_eq!(
        e.to_string(),
        "apply failed on b; applied on: a; not tried: c, d"
    );
    assert_eq!(e.exit_code(), ExitCode::FAILURE);
    assert!(
        ran.out.ends_with(
            "    HOST  RESULT       DIGEST        TIME\n    \
             a     applied      0123456789ab  1.5s\n    \
             b     rolled_back  0123456789ab  1.5s\n    \
             c     skipped      -                -\n    \
             d     skipped      -                -\n\n\
             b (rolled_back): web did not report healthy within 2m; the previous configuration runs again\n\n\
             not tried, still on their previous configuration: c, d\n"
        ),
        "{}",
        ran.out
    );
    // Each host's progress, its lines taking turns with the other's.
    for line in [
        "a: write config",
        "a: write config done (0.2s)",
        "a: applied (1.5s)",
        "b: restart web",
        "b: restart web failed",
        "b: rolled_back (1.5s)",
    ] {
        assert!(
            ran.err.lines().any(|l| l == line),
            "{line:?} in {}",
            ran.err
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_rolled_back_host_fails_the_apply_and_json_keeps_its_record() -> TestResult {
    let plan = ok(&changing_plan())?;
    let rolled_back = stream(&finished(ApplyOutcome::RolledBack, Some(ROLLED_BACK)));
    let fake = FakeHosts::new("apply-rolled-back", &[("a", "")], "{}")?
        .answering_in_turn("a", &[&plan, &rolled_back]);
    let mut s = settings(&fake, 1)?;
    s.plan.json = true;
    let ran = run(&fake, &s, "").await;
    let e = ran.result.err().ok_or("expected a failure")?;
    assert_eq!(e.exit_code(), ExitCode::FAILURE);
    assert!(ran.err.is_empty(), "no progress with --json: {}", ran.err);
    let printed: serde_json::Value = serde_json::from_str(&ran.out)?;
    let expected = serde_json::json!({
        "plans": [{ "host": "a", "address": "a", "source": SOURCE, "plan": changing_plan() }],
        "applies": [{
            "host": "a",
            "outcome": "rolled_back",
            "record": record(ApplyOutcome::RolledBack, Some(ROLLED_BACK))
        }]
    });
    assert_eq!(printed, expected);
    Ok(())
}

#[tokio::test]
async fn waiting_names_the_lock_holder_and_the_options_reach_hostd() -> TestResult {
    let plan = ok(&changing_plan())?;
    let mut events = vec![ApplyEvent::Waiting {
        holder: "deploy of api@.service by ci@runner since 2026-01-02T02:59:00Z".into(),
    }];
    events.extend(finished(ApplyOutcome::Applied, None));
    let fake = FakeHosts::new("apply-wait", &[("a", "")], "{}")?
        .answering_in_turn("a", &[&plan, &stream(&events)]);
    let mut s = settings(&fake, 1)?;
    (s.lock_wait_seconds, s.health_timeout_seconds) = (600, Some(90));
    let ran = run(&fake, &s, "").await;
    ran.result?;
    assert_eq!(
        ran.err,
        "a: waiting for the operations lock, held by deploy of api@.service by ci@runner since 2026-01-02T02:59:00Z\n\
         a: write config\na: write config done (0.2s)\na: restart web\n\
         a: restart web done (1.0s)\na: applied (1.5s)\n"
    );
    let sent = applies(&fake);
    assert!(
        sent.first()
            .is_some_and(|r| r.ends_with(r#""lock_wait_seconds":600,"health_timeout_seconds":90}"#)),
        "{sent:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_host_refusing_the_apply_stops_the_rest() -> TestResult {
    let plan = ok(&changing_plan())?;
    let held = r#"409 Conflict|{"error":"the host is held by a deploy of api@.service"}"#;
    let fake = FakeHosts::new("apply-409", &[("a", ""), ("b", &plan)], "{}")?
        .answering_in_turn("a", &[&plan, held]);
    let ran = run(&fake, &settings(&fake, 1)?, "").await;
    let e = ran.result.err().ok_or("expected a failure")?;
    assert_eq!(
        e.to_string(),
        "apply failed on a; applied on: none; not tried: b"
    );
    assert!(
        ran.out.contains(
            "a (not_applied): a: hostd answered 409 to /v1/config/apply: the host is held by a deploy of api@.service"
        ),
        "{}",
        ran.out
    );
    assert_eq!(
        applies(&fake),
        [format!("a POST /v1/config/apply {APPLY_BODY}")]
    );
    Ok(())
}

#[tokio::test]
async fn the_apply_goes_as_root_and_the_plan_does_not() -> TestResult {
    let fake = FakeHosts::new("apply-root", &[("a", &ok(&changing_plan())?)], "{}")?.with_program(
        "hostd-as-root",
        "#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n",
    )?;
    let mut s = settings(&fake, 1)?;
    for host in &mut s.plan.targets.hosts {
        host.root_hostd_path = "hostd-as-root".into();
    }
    let ran = run(&fake, &s, "").await;
    assert!(matches!(ran.result, Err(HostConfigError::Failed { .. })));
    assert!(
        ran.out.contains(
            "a (not_applied): a: `hostd-as-root dial-stdio` on the host failed (exit 1): sudo: a password is required"
        ),
        "{}",
        ran.out
    );
    assert_eq!(
        fake.requests(),
        [format!("a POST /v1/config/plan {PLAN_BODY}")]
    );
    Ok(())
}
