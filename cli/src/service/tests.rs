use hostd_api::{ActionResult, ActiveState, HostStatus, ServiceAction, UnitStatus};

use super::*;
use crate::exit::EXIT_USAGE;
use crate::fake_hosts::{self, summary, text, unit};

/// redis, and api with one instance of at most 8.
pub(super) fn host_status() -> HostStatus {
    fake_hosts::host_status(
        vec![
            unit("redis", "redis-server.service", None, ActiveState::Active),
            unit("api", "api@1.service", Some(1), ActiveState::Active),
        ],
        vec![
            summary("redis", "redis-server.service", None, None),
            summary("api", "api@.service", Some(1), Some(8)),
        ],
    )
}

pub(super) fn scale(service: &str, instances: u32) -> Step {
    Step::Scale {
        service: service.into(),
        instances,
    }
}

fn exit(e: ServiceError) -> ExitCode {
    e.exit_code()
}

#[test]
fn check_refuses_what_the_status_already_rules_out() {
    let hosts = [("a".to_owned(), host_status())];
    assert!(check(&[scale("api", 8)], &hosts).is_ok());
    let err = check(&[scale("nosuch", 2)], &hosts).err();
    let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert_eq!(
        text,
        "unknown service \"nosuch\" on a, so nothing was changed; it has: api, redis"
    );
    assert!(err.is_some_and(|e| exit(e) == ExitCode::from(EXIT_USAGE)));

    let err = check(&[scale("api", 2), scale("api", 999)], &hosts).err();
    assert!(
        err.as_ref()
            .is_some_and(|e| e.to_string().contains("at most 8 instances")),
        "{err:?}"
    );
    assert!(err.is_some_and(|e| exit(e) == ExitCode::from(EXIT_USAGE)));

    let err = check(&[scale("redis", 2)], &hosts).err();
    assert!(
        err.as_ref().is_some_and(|e| e
            .to_string()
            .ends_with("cannot be scaled, so nothing was changed; instanced services there: api")),
        "{err:?}"
    );
    let restart = Step::Action {
        service: "redis".into(),
        action: ServiceAction::Restart,
    };
    assert!(check(&[restart], &hosts).is_ok());
}

#[test]
fn an_older_hostd_without_service_summaries_is_left_to_judge() {
    let mut old = host_status();
    old.services.clear();
    let hosts = [("a".to_owned(), old)];
    assert!(check(&[scale("api", 999)], &hosts).is_ok());
    assert!(check(&[scale("nosuch", 1)], &hosts).is_err());
}

#[test]
fn duplicate_services_in_one_scale_are_refused() {
    let t = |s: &str, n| ScaleTarget {
        service: s.into(),
        instances: n,
    };
    let err = scale_steps(&[t("api", 3), t("api", 2)]).err();
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        "api is given more than once; name each service once"
    );
}

pub(super) fn result(service: &str, units: Vec<UnitStatus>) -> ActionResult {
    ActionResult {
        service: service.into(),
        units,
        seconds: 4.25,
    }
}

fn outcomes() -> Vec<HostOutcome> {
    let scaled = result(
        "api",
        vec![
            unit("api", "api@1.service", Some(1), ActiveState::Active),
            unit("api", "api@2.service", Some(2), ActiveState::Active),
            unit("api", "api@3.service", Some(3), ActiveState::Activating),
        ],
    );
    let host = |name: &str, outcome, results| HostOutcome {
        host: name.into(),
        address: format!("10.231.0.{}", name.len()),
        outcome,
        answer: Results { results },
        error: (outcome == Outcome::Failed)
            .then(|| format!("{name}: hostd answered 500 to /v1/services/api/instances: boom")),
    };
    vec![
        host("a", Outcome::Done, vec![scaled]),
        host("bb", Outcome::Failed, vec![]),
        host("c", Outcome::NotTouched, vec![]),
    ]
}

#[test]
fn human_output_lists_units_per_host_and_who_was_touched() -> Result<(), Box<dyn std::error::Error>>
{
    let mut out = Vec::new();
    render::human(&mut out, "prod", "scale api=3", &outcomes())?;
    let shown = text(&out);
    assert_eq!(
        shown,
        "a  10.231.0.1  done\n    api  4.2s\n      \
         api@1.service  active/running\n      api@2.service  active/running\n      \
         api@3.service  activating/dead\n\
         bb  10.231.0.2  failed\n\
         c  10.231.0.1  not touched\n\
         prod: scale api=3 failed on bb; done on: a; not touched: c\n"
    );
    let all_done = &outcomes()[..1];
    let mut out = Vec::new();
    render::human(&mut out, "prod", "scale api=3", all_done)?;
    let shown = text(&out);
    assert!(
        shown.ends_with("prod: scale api=3 done on 1 host(s)\n"),
        "{shown}"
    );
    Ok(())
}

#[test]
fn json_output_has_one_object_per_host() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    crate::output::json(&mut out, &outcomes())?;
    let v: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(v[0]["host"], "a");
    assert_eq!(v[0]["outcome"], "done");
    assert_eq!(v[0]["results"][0]["service"], "api");
    assert_eq!(v[0]["results"][0]["units"][2]["unit"], "api@3.service");
    assert_eq!(v[0]["results"][0]["units"][2]["instance"], 3);
    assert_eq!(v[0]["results"][0]["seconds"], 4.25);
    assert!(v[0].get("error").is_none());
    assert_eq!(v[1]["outcome"], "failed");
    assert!(v[1]["error"].as_str().unwrap_or_default().ends_with("boom"));
    assert_eq!(v[2]["outcome"], "not_touched");
    Ok(())
}
