//! Whether `apply` goes ahead: only on plans from every host, some of
//! which change something, and only with a yes.

use hostd_api::ApplyOutcome;

use super::apply_tests::{APPLY_BODY, applies, finished, run, settings};
use super::tests::{PLAN_BODY, TestResult, changing_plan, empty_plan, ok, refusal};
use super::*;
use crate::exit::{CommandError, EXIT_USAGE};
use crate::fake_hosts::{FakeHosts, stream};

#[tokio::test]
async fn without_yes_and_no_terminal_nothing_is_applied() -> TestResult {
    let fake = FakeHosts::new("apply-no-yes", &[("a", &ok(&changing_plan())?)], "{}")?;
    let mut s = settings(&fake, 1)?;
    s.yes = false;
    let ran = run(&fake, &s, "y").await;
    let e = ran.result.err().ok_or("expected a refusal")?;
    assert_eq!(
        e.to_string(),
        "not applying unconfirmed, and stdin is no terminal to ask on: pass --yes; nothing changed"
    );
    assert_eq!(e.exit_code(), ExitCode::from(EXIT_USAGE));
    assert_eq!(ran.asked, None);
    assert!(
        ran.out.contains("restart web (command changed)"),
        "{}",
        ran.out
    );
    assert_eq!(
        fake.requests(),
        [format!("a POST /v1/config/plan {PLAN_BODY}")]
    );
    Ok(())
}

#[tokio::test]
async fn at_a_terminal_only_yes_applies() -> TestResult {
    let plan = ok(&changing_plan())?;
    let fake = FakeHosts::new(
        "apply-ask",
        &[("a", &plan), ("b", &ok(&empty_plan())?)],
        "{}",
    )?;
    let mut s = settings(&fake, 1)?;
    (s.yes, s.stdin_tty) = (false, true);
    let ran = run(&fake, &s, "\n").await;
    assert!(matches!(ran.result, Err(HostConfigError::Declined)));
    assert_eq!(
        ran.asked.as_deref(),
        Some("Apply to 1 host(s) of x (a)? [y/N]")
    );
    assert!(applies(&fake).is_empty());

    let applied = stream(&finished(ApplyOutcome::Applied, None));
    let fake = FakeHosts::new(
        "apply-ask-yes",
        &[("a", ""), ("b", &ok(&empty_plan())?)],
        "{}",
    )?
    .answering_in_turn("a", &[&plan, &applied]);
    let ran = run(&fake, &s, "yes\n").await;
    ran.result?;
    // b runs the file already: it is not asked to apply it.
    assert_eq!(
        applies(&fake),
        [format!("a POST /v1/config/apply {APPLY_BODY}")]
    );
    assert!(
        ran.out.ends_with(
            "    HOST  RESULT     DIGEST        TIME\n    \
             a     applied    0123456789ab  1.5s\n    \
             b     unchanged  -                -\n"
        ),
        "{}",
        ran.out
    );
    Ok(())
}

#[tokio::test]
async fn nothing_to_apply_and_dry_runs_ask_no_host_to_apply() -> TestResult {
    let fake = FakeHosts::new("apply-same", &[("a", &ok(&empty_plan())?)], "{}")?;
    let ran = run(&fake, &settings(&fake, 1)?, "").await;
    ran.result?;
    assert!(
        ran.out.ends_with(
            "    no changes\nnothing to apply: every host runs its declared configuration\n"
        ),
        "{}",
        ran.out
    );
    assert!(applies(&fake).is_empty());

    let fake = FakeHosts::new("apply-dry", &[("a", &ok(&changing_plan())?)], "{}")?;
    let mut s = settings(&fake, 1)?;
    s.dry_run = true;
    let ran = run(&fake, &s, "").await;
    ran.result?;
    assert!(
        ran.out
            .ends_with("    reconfigure jobs\ndry run: would apply on a; nothing changed\n"),
        "{}",
        ran.out
    );
    assert_eq!(
        fake.requests(),
        [format!("a POST /v1/config/plan {PLAN_BODY}")]
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_plan_anywhere_applies_nowhere() -> TestResult {
    let fake = FakeHosts::new(
        "apply-refused",
        &[("a", &ok(&changing_plan())?), ("b", &refusal())],
        "{}",
    )?;
    let ran = run(&fake, &settings(&fake, 1)?, "").await;
    assert!(matches!(ran.result, Err(HostConfigError::Refused { ref hosts }) if hosts == &["b"]));
    assert!(applies(&fake).is_empty());
    Ok(())
}
