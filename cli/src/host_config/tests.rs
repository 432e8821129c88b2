use hostd_api::{
    ActionKind, AppliesList, ApplyOutcome, ApplyRecord, ConfigPlan, KeyChange, PlanAction,
    UnitFileChange,
};

use super::*;
use crate::exit::{CommandError, EXIT_USAGE};
use crate::fake_hosts::{FakeHosts, text};
use crate::targets::TargetError;

pub(super) type TestResult = Result<(), Box<dyn std::error::Error>>;

pub(super) const SOURCE: &str = "hostd/production.toml";
/// What every host's plan request carries, as the fake logs it.
pub(super) const PLAN_BODY: &str = r#"{"text":"[apps.web]\ncommand = \"bin/web --port 8080\"\n","source":"hostd/production.toml"}"#;
pub(super) const REFUSAL: &str = "hostd/production.toml:2: key apps.web.command: must not be empty";

pub(super) fn declared() -> Declared {
    Declared {
        source: SOURCE.into(),
        text: "[apps.web]\ncommand = \"bin/web --port 8080\"\n".into(),
    }
}

pub(super) fn plan_settings(fake: &FakeHosts, json: bool) -> Result<PlanSettings, TargetError> {
    let targets = Targets::pick("x", &fake.hosts, None)?;
    Ok(PlanSettings {
        files: vec![declared(); targets.hosts.len()],
        targets,
        json,
        timeout: Duration::from_secs(10),
    })
}

pub(super) fn empty_plan() -> ConfigPlan {
    ConfigPlan {
        source: SOURCE.into(),
        digest: "0123456789abcdef".repeat(4),
        current_digest: "0123456789abcdef".repeat(4),
        ..ConfigPlan::default()
    }
}

/// A key changed, one added and one removed; a unit rewritten and a
/// timer added; a restart and a reconfiguration.
pub(super) fn changing_plan() -> ConfigPlan {
    let key = |key: &str, before: Option<&str>, after: Option<&str>| KeyChange {
        key: key.into(),
        before: before.map(Into::into),
        after: after.map(Into::into),
    };
    ConfigPlan {
        current_digest: "fedcba9876543210".repeat(4),
        keys: vec![
            key(
                "apps.web.command",
                Some("\"bin/web\""),
                Some("\"bin/web --port 8080\""),
            ),
            key("jobs.cleanup.schedule", None, Some("\"daily\"")),
            key("metrics.listen", Some("\"127.0.0.1:9100\""), None),
        ],
        units: vec![
            UnitFileChange {
                unit: "hostd-app-web.service".into(),
                before: Some("[Unit]\nDescription=web\n[Service]\nExecStart=bin/web\n".into()),
                after: Some(
                    "[Unit]\nDescription=web\n[Service]\nExecStart=bin/web --port 8080\n".into(),
                ),
            },
            UnitFileChange {
                unit: "hostd-job-cleanup.timer".into(),
                before: None,
                after: Some("[Timer]\nOnCalendar=daily\n".into()),
            },
        ],
        actions: vec![
            PlanAction {
                kind: ActionKind::Restart,
                target: "web".into(),
                reason: "command changed".into(),
            },
            PlanAction {
                kind: ActionKind::Reconfigure,
                target: "jobs".into(),
                reason: String::new(),
            },
        ],
        ..empty_plan()
    }
}

pub(super) fn ok<T: serde::Serialize>(answer: &T) -> Result<String, serde_json::Error> {
    Ok(format!("200 OK|{}", serde_json::to_string(answer)?))
}

pub(super) fn refusal() -> String {
    format!(r#"422 Unprocessable Entity|{{"error":"{REFUSAL}"}}"#)
}

const CHANGING_TEXT: &str = "\
b  b  hostd/production.toml
  keys
    ~ apps.web.command: \"bin/web\" -> \"bin/web --port 8080\"
    + jobs.cleanup.schedule = \"daily\"
    - metrics.listen = \"127.0.0.1:9100\"
  unit files
    --- a/hostd-app-web.service
    +++ b/hostd-app-web.service
    @@ -1,4 +1,4 @@
     [Unit]
     Description=web
     [Service]
    -ExecStart=bin/web
    +ExecStart=bin/web --port 8080
    --- /dev/null
    +++ b/hostd-job-cleanup.timer
    @@ -0,0 +1,2 @@
    +[Timer]
    +OnCalendar=daily
  actions
    restart web (command changed)
    reconfigure jobs
";

async fn diff(fake: &FakeHosts, json: bool) -> (Result<ExitCode, HostConfigError>, String) {
    let mut out = Vec::new();
    let code = match plan_settings(fake, json) {
        Ok(s) => diff_with(&fake.transport, &s, &mut out).await,
        Err(e) => Err(e.into()),
    };
    (code, text(&out))
}

#[tokio::test]
async fn diff_exits_0_when_no_host_differs_and_1_when_one_does() -> TestResult {
    let same = ok(&empty_plan())?;
    let fake = FakeHosts::new("diff-same", &[("a", &same), ("b", &same)], "{}")?;
    let (code, out) = diff(&fake, false).await;
    assert_eq!(code?, ExitCode::SUCCESS);
    assert_eq!(
        out,
        "a  a  hostd/production.toml\n    no changes\nb  b  hostd/production.toml\n    no changes\n"
    );
    assert_eq!(
        fake.requests_sorted(),
        [
            format!("a POST /v1/config/plan {PLAN_BODY}"),
            format!("b POST /v1/config/plan {PLAN_BODY}")
        ]
    );

    let differs = ok(&changing_plan())?;
    let fake = FakeHosts::new("diff-differs", &[("a", &same), ("b", &differs)], "{}")?;
    let (code, out) = diff(&fake, false).await;
    assert_eq!(code?, ExitCode::from(EXIT_DIFFERS));
    assert_eq!(
        out,
        format!("a  a  hostd/production.toml\n    no changes\n{CHANGING_TEXT}")
    );
    Ok(())
}

#[tokio::test]
async fn diff_json_is_one_array_with_each_host_plan_or_error() -> TestResult {
    let fake = FakeHosts::new(
        "diff-json",
        &[("a", &ok(&changing_plan())?), ("b", &refusal())],
        "{}",
    )?;
    let (code, out) = diff(&fake, true).await;
    let printed: serde_json::Value = serde_json::from_str(&out)?;
    let expected = serde_json::json!([
        { "host": "a", "address": "a", "source": SOURCE, "plan": changing_plan() },
        {
            "host": "b", "address": "b", "source": SOURCE,
            "error": format!("b: hostd answered 422 to /v1/config/plan: {REFUSAL}"),
            "refused": true
        }
    ]);
    assert_eq!(printed, expected);
    assert!(matches!(code, Err(HostConfigError::Refused { .. })));
    Ok(())
}

#[tokio::test]
async fn a_refused_file_is_a_failure_showing_hostds_error_not_a_difference() -> TestResult {
    let fake = FakeHosts::new(
        "diff-refused",
        &[("a", &ok(&changing_plan())?), ("b", &refusal())],
        "{}",
    )?;
    let (code, out) = diff(&fake, false).await;
    assert!(
        out.ends_with(&format!(
            "b  b  hostd/production.toml\n    b: hostd answered 422 to /v1/config/plan: {REFUSAL}\n"
        )),
        "{out}"
    );
    let e = code.err().ok_or("expected an error")?;
    assert_eq!(
        e.to_string(),
        "hostd refused the configuration on b; its error names the file, line and key; nothing changed"
    );
    assert_eq!(e.exit_code(), ExitCode::from(EXIT_USAGE));
    Ok(())
}

#[tokio::test]
async fn an_unreachable_host_fails_the_diff_with_exit_1() -> TestResult {
    let fake = FakeHosts::new(
        "diff-unreachable",
        &[("a", &ok(&empty_plan())?), ("b", "")],
        "{}",
    )?
    .unreachable(&["b"]);
    let (code, out) = diff(&fake, false).await;
    assert!(
        out.contains("b: ssh failed: ssh: connect to host b port 22"),
        "{out}"
    );
    let e = code.err().ok_or("expected an error")?;
    assert_eq!(e.to_string(), "no plan from b; nothing changed");
    assert_eq!(e.exit_code(), ExitCode::FAILURE);
    Ok(())
}

pub(super) fn record(outcome: ApplyOutcome, error: Option<&str>) -> ApplyRecord {
    ApplyRecord {
        at: "2026-01-02T03:00:00Z".into(),
        requested_by: "op@laptop".into(),
        caller: Some("admin".into()),
        source: SOURCE.into(),
        digest: "0123456789abcdef".repeat(4),
        previous_digest: "fedcba9876543210".repeat(4),
        outcome,
        actions: vec![],
        seconds: 3.25,
        error: error.map(Into::into),
    }
}

#[tokio::test]
async fn applies_shows_each_ledger_with_errors_cut_to_one_line() -> TestResult {
    let long = "web did not report healthy within 2m: unit:web failed (exit-code)\n\
                web[12]: listen tcp :8080: address already in use";
    let mut slow = record(ApplyOutcome::Applied, None);
    slow.seconds = 125.0;
    let ledger = AppliesList {
        applies: vec![slow, record(ApplyOutcome::RolledBack, Some(long))],
    };
    let down = r#"500 Internal Server Error|{"error":"cannot read the ledger"}"#;
    let empty = ok(&AppliesList { applies: vec![] })?;
    let fake = FakeHosts::new(
        "applies",
        &[("a", &ok(&ledger)?), ("b", down), ("c", &empty)],
        "{}",
    )?;
    let settings = ReadSettings {
        targets: Targets::pick("x", &fake.hosts, None)?,
        json: false,
        timeout: Duration::from_secs(10),
    };
    let mut out = Vec::new();
    let code = applies_with(&fake.transport, &settings, &mut out).await?;
    assert_eq!(code, ExitCode::FAILURE);
    // The header keeps its padding (one styled span): the error column
    // is 60 characters and the ellipsis wide.
    let pad = " ".repeat(61 - "ERROR".len());
    let expected = format!(
        "\
a
    TIME                  OUTCOME      BY         SOURCE                 DIGEST        SECONDS  ERROR{pad}\n    \
    2026-01-02T03:00:00Z  applied      op@laptop  hostd/production.toml  0123456789ab    125.0
    2026-01-02T03:00:00Z  rolled_back  op@laptop  hostd/production.toml  0123456789ab      3.2  web did not report healthy within 2m: unit:web failed (exit-…
b
    b: hostd answered 500 to /v1/config/applies: cannot read the ledger
c
    no applies recorded yet
"
    );
    assert_eq!(text(&out), expected);

    let json = ReadSettings {
        json: true,
        ..settings
    };
    let mut out = Vec::new();
    applies_with(&fake.transport, &json, &mut out).await?;
    let printed: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(printed[0]["answer"]["applies"][1]["error"], long);
    Ok(())
}
