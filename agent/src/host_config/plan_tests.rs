use std::collections::BTreeMap;
use std::path::Path;

use hostd_api::ActionKind;

use super::*;

const BASE: &str = "[services.redis]\nunit = \"redis-server.service\"\n\n\
[services.api]\nunit = \"api@.service\"\nrelease_dir = \"/srv/api\"\n";

const WEB: &str = "\n[services.web]\ncommand = \"python3 -m http.server $PORT\"\nport = 8400\nrelease_dir = \"/srv/web\"\n";

const JOB: &str = "\n[jobs.tick]\ncommand = \"/bin/echo tick\"\nschedule = \"hourly\"\n";

fn planned(old: &str, new: &str) -> Result<Planned, crate::config::ConfigError> {
    let o = Config::parse(Path::new("old.toml"), old)?;
    let n = Config::parse(Path::new("new.toml"), new)?;
    Ok(plan(old, &o, new, &n, "hostd/prod.toml", &BTreeMap::new()))
}

#[test]
fn the_same_declaration_plans_nothing_even_reformatted() -> Result<(), crate::config::ConfigError> {
    let p = planned(BASE, &format!("# a comment\n{BASE}"))?;
    assert!(p.plan.is_empty(), "{:?}", p.plan);
    assert_eq!(p.changes, Changes::default());
    Ok(())
}

#[test]
fn a_new_app_and_job_start_and_touch_nothing_else() -> Result<(), crate::config::ConfigError> {
    let p = planned(BASE, &format!("{BASE}{WEB}{JOB}"))?;
    assert_eq!(p.changes.restart, vec!["web".to_owned()]);
    assert!(p.changes.jobs);
    assert!(p.changes.at_start.is_empty());
    // No refetch of secrets, no new backup schedule, nothing restarted.
    assert!(!p.changes.secrets && !p.changes.backup && p.changes.scale.is_empty());
    let kinds: Vec<(ActionKind, &str)> = p
        .plan
        .actions
        .iter()
        .map(|a| (a.kind, a.target.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ActionKind::Start, "web"),
            (ActionKind::Reconfigure, "jobs")
        ]
    );
    let units: Vec<&str> = p.plan.units.iter().map(|u| u.unit.as_str()).collect();
    assert_eq!(
        units,
        vec!["hostd-app-web@.service", "hostd-job-tick.timer"]
    );
    assert!(p.plan.keys.iter().any(|k| k.key == "services.web.port"
        && k.before.is_none()
        && k.after.as_deref() == Some("8400")));
    Ok(())
}

#[test]
fn a_changed_service_restarts_and_says_what_changed() -> Result<(), crate::config::ConfigError> {
    let old = format!("{BASE}{WEB}");
    let new = old.replace("port = 8400", "port = 8401");
    let p = planned(&old, &new)?;
    assert_eq!(p.changes.restart, vec!["web".to_owned()]);
    let restart = p
        .plan
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Restart);
    assert_eq!(restart.map(|a| a.reason.as_str()), Some("port changed"));
    Ok(())
}

#[test]
fn removing_an_app_stops_it_but_a_service_of_its_own_unit_is_only_let_go()
-> Result<(), crate::config::ConfigError> {
    let old = format!("{BASE}{WEB}");
    let p = planned(
        &old,
        "[services.api]\nunit = \"api@.service\"\nrelease_dir = \"/srv/api\"\n",
    )?;
    assert_eq!(
        p.changes.removed,
        vec!["redis".to_owned(), "web".to_owned()]
    );
    let reasons: Vec<&str> = p.plan.actions.iter().map(|a| a.reason.as_str()).collect();
    assert!(reasons[0].contains("no longer supervised"), "{reasons:?}");
    assert!(
        reasons[1].contains("stopped, its unit removed"),
        "{reasons:?}"
    );
    Ok(())
}

#[test]
fn passwords_are_hidden_and_what_reads_them_reconfigured() -> Result<(), crate::config::ConfigError>
{
    let new = format!(
        "{BASE}[checks]\npostgres = \"host=/run/postgresql user=postgres password=hunter2\"\n[metrics]\nemf_interval = \"30s\"\n"
    );
    let p = planned(BASE, &new)?;
    assert!(p.changes.at_start.is_empty());
    assert!(p.changes.backup && !p.changes.secrets);
    let targets: Vec<&str> = p.plan.actions.iter().map(|a| a.target.as_str()).collect();
    assert_eq!(targets, vec!["backup", "metrics", "checks"]);
    let shown = serde_json::to_string(&p.plan).unwrap_or_default();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("(hidden)"), "{shown}");
    Ok(())
}

#[test]
fn a_service_gaining_a_database_reconfigures_backups_and_restarts_it()
-> Result<(), crate::config::ConfigError> {
    let new = BASE.replace("release_dir", "database = \"api\"\nrelease_dir");
    let p = planned(BASE, &new)?;
    assert!(p.changes.backup && !p.changes.secrets);
    assert_eq!(p.changes.restart, vec!["api".to_owned()]);
    Ok(())
}

#[test]
fn where_hostd_listens_needs_a_restart_of_hostd() -> Result<(), crate::config::ConfigError> {
    let p = planned(
        BASE,
        &format!("{BASE}[health]\nlisten = \"127.0.0.1:7781\"\n"),
    )?;
    assert_eq!(p.changes.at_start, vec!["health.listen".to_owned()]);
    Ok(())
}

#[test]
fn a_removed_jobs_timer_on_disk_shows_as_removed() -> Result<(), crate::config::ConfigError> {
    let o = Config::parse(Path::new("o"), &format!("{BASE}{JOB}"))?;
    let n = Config::parse(Path::new("n"), BASE)?;
    let on_disk = BTreeMap::from([("hostd-job-tick.timer".to_owned(), "[Timer]\n".to_owned())]);
    let p = plan(&format!("{BASE}{JOB}"), &o, BASE, &n, "x.toml", &on_disk);
    assert_eq!(p.plan.units.len(), 1);
    assert!(p.plan.units[0].after.is_none());
    Ok(())
}

#[test]
fn a_default_written_out_is_no_restart_but_dropping_the_group_is()
-> Result<(), crate::config::ConfigError> {
    let with_defaults = format!(
        "[health]\nlisten = \"0.0.0.0:7780\"\n[control]\nsocket = \"/run/hostd/control.sock\"\ngroup = \"hostd\"\n{BASE}"
    );
    let grouped = format!("[control]\ngroup = \"hostd\"\n{BASE}");
    let p = planned(&with_defaults, &grouped)?;
    assert!(p.changes.at_start.is_empty(), "{:?}", p.changes.at_start);
    let p = planned(&with_defaults, BASE)?;
    assert_eq!(p.changes.at_start, vec!["control.group".to_owned()]);
    Ok(())
}

#[test]
fn a_changed_count_alone_scales_and_restarts_nothing() -> Result<(), crate::config::ConfigError> {
    let old = BASE.replace("release_dir", "instances = 2\nrelease_dir");
    let p = planned(&old, &old.replace("instances = 2", "instances = 3"))?;
    assert_eq!(p.changes.scale, vec!["api".to_owned()]);
    assert!(p.changes.restart.is_empty() && !p.changes.jobs);
    let action = p.plan.actions.first().map(|a| (a.kind, a.reason.as_str()));
    assert_eq!(action, Some((ActionKind::Scale, "instances 2 -> 3")));
    let p = planned(
        &old,
        &old.replace("instances = 2", "instances = 3\nhealth_path = \"/up\""),
    )?;
    assert_eq!(p.changes.restart, vec!["api".to_owned()]);
    assert!(p.changes.scale.is_empty());
    Ok(())
}
