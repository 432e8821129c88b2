use std::path::Path;

use hostd_api::{DeployEvent, DeployOutcome};

use super::*;
use crate::config::ConfigError;
use crate::fake_hosts::text;

#[test]
fn pre_switch_tasks_go_with_the_deploy_sorted_by_name() -> Result<(), ConfigError> {
    let config = Config::from_str(
        r#"[services.backend]
artifact = "dist"
unit = "api@.service"
hook_timeout = "3m"
[services.backend.tasks.zz-warm]
command = "bin/warm"
pre_switch = true
[services.backend.tasks.seed]
command = "bin/seed"
[services.backend.tasks.migrate]
command = "bin/migrate up"
pre_switch = true
timeout = "1500ms"
"#,
        Path::new("/p/hostctl.toml"),
    )?;
    let tasks = pre_switch_tasks(config.service("backend")?);
    let spec = |name: &str, command: &str, timeout_seconds| TaskSpec {
        name: name.into(),
        command: command.into(),
        timeout_seconds,
    };
    assert_eq!(
        tasks,
        [
            spec("migrate", "bin/migrate up", 2),
            spec("zz-warm", "bin/warm", 180)
        ]
    );
    Ok(())
}

#[test]
fn task_output_is_prefixed_and_the_failed_step_named() -> std::io::Result<()> {
    let step = |s: &str| DeployEvent::Step { step: s.into() };
    let output = |line: &str| DeployEvent::Output {
        step: "task migrate".into(),
        line: line.into(),
    };
    let finished = |error: Option<&str>| DeployEvent::Finished {
        outcome: if error.is_some() {
            DeployOutcome::Failed
        } else {
            DeployOutcome::Ok
        },
        version: "v2".into(),
        serving: Some("v1".into()),
        seconds: 3.0,
        error: error.map(Into::into),
    };
    let mut err = Vec::new();
    let mut steps = render::Steps::new("a", &mut err);
    for e in [
        step("unpack v2"),
        DeployEvent::StepDone {
            step: "unpack v2".into(),
            seconds: 0.25,
        },
        step("task migrate"),
        output("applying 0003_users"),
        finished(Some("the task migrate hook failed")),
        // A later deploy that ends well names no step.
        step("switch to v2"),
        finished(None),
    ] {
        steps.event(&e)?;
    }
    assert_eq!(
        text(&err),
        "a: unpack v2\na: unpack v2 done (0.2s)\na: task migrate\n\
         a: task migrate | applying 0003_users\na: task migrate failed\na: switch to v2\n"
    );
    Ok(())
}

#[test]
fn a_multi_line_error_stays_under_its_host() -> std::io::Result<()> {
    let mut r = HostResult::skipped("a", "v2");
    r.outcome = HostOutcome::Failed;
    r.serving = Some("v1".into());
    r.error = Some(
        "the task migrate hook `bin/migrate up` failed (exit status 3); its last output:\n\
         applying 0003_users\nno such table: users; nothing changed, the old release still serves"
            .into(),
    );
    let mut out = Vec::new();
    render::summary(&mut out, &[r])?;
    let out = text(&out);
    assert!(
        out.ends_with(
            "\na (failed): the task migrate hook `bin/migrate up` failed (exit status 3); its last output:\n    \
             applying 0003_users\n    no such table: users; nothing changed, the old release still serves\n"
        ),
        "{out}"
    );
    Ok(())
}
