use hostd_api::{ActiveState, ComponentHealth, UnitStatus};

use super::*;
use crate::fake_hosts::{FakeHosts, host_status, text, unit};

/// A host whose redis failed, reported `health` overall and for redis.
fn status(health: HealthStatus) -> HostStatus {
    let mut redis = unit("redis", "redis-server.service", None, ActiveState::Failed);
    redis.sub_state = "failed".into();
    let mut status = host_status(vec![redis], vec![]);
    status.health.status = health;
    status.health.components = vec![ComponentHealth {
        name: "unit:redis".into(),
        status: health,
        reason: Some("redis-server.service is failed".into()),
    }];
    status
}

fn report(host: &str, s: Option<HostStatus>) -> HostReport {
    HostReport {
        host: host.into(),
        address: format!("10.231.0.{}", host.len()),
        reachable: s.is_some(),
        error: s
            .is_none()
            .then(|| format!("{host}: ssh failed: Connection timed out")),
        status: s,
        hint: None,
    }
}

#[test]
fn exit_decision() {
    use HealthStatus::*;
    let ok = |h| report("a", Some(status(h)));
    assert_eq!(outcome(&[ok(Healthy), ok(Degraded)]), Outcome::AllServing);
    assert_eq!(outcome(&[ok(Healthy), ok(Unhealthy)]), Outcome::Trouble);
    assert_eq!(outcome(&[ok(Healthy), report("b", None)]), Outcome::Trouble);
    let mut api_error = report("c", None);
    api_error.reachable = true;
    assert_eq!(outcome(&[api_error]), Outcome::Trouble);
    assert_eq!(outcome(&[]), Outcome::AllServing);
}

#[test]
fn human_output_shows_units_failing_components_and_unreachable_hosts()
-> Result<(), Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    let reports = [
        report("a", Some(status(HealthStatus::Unhealthy))),
        report("bb", None),
    ];
    render::human(&mut out, "prod", &reports)?;
    let text = text(&out);
    assert_eq!(
        text,
        "a  10.231.0.1  unhealthy  hostd 0.1.0 up 1h 2m 5s\n    hostname h\n    \
         redis  failed/failed  redis-server.service\n    \
         unhealthy unit:redis: redis-server.service is failed\n\
         bb  10.231.0.2  unreachable\n    bb: ssh failed: Connection timed out\n\
         prod: 2 of 2 host(s) in trouble: a unhealthy, bb unreachable\n"
    );
    Ok(())
}

#[test]
fn human_output_labels_instances_and_shows_stops_restarts_and_failures()
-> Result<(), Box<dyn std::error::Error>> {
    let mut st = status(HealthStatus::Healthy);
    st.units = vec![UnitStatus {
        instance: Some(2),
        service: "api".into(),
        unit: "api@2.service".into(),
        active_state: ActiveState::Active,
        sub_state: "running".into(),
    }];
    st.health.components.clear();
    st.services = vec![
        hostd_api::ServiceSummary {
            name: "api".into(),
            unit: "api@.service".into(),
            running: true,
            instances: Some(2),
            max_instances: Some(8),
            restarts: 1,
        },
        hostd_api::ServiceSummary {
            name: "redis".into(),
            unit: "redis-server.service".into(),
            running: false,
            instances: None,
            max_instances: None,
            restarts: 0,
        },
    ];
    st.events = vec![hostd_api::UnitEvent {
        time: "2026-11-22T03:00:00Z".into(),
        service: "api".into(),
        unit: "api@2.service".into(),
        result: "signal".into(),
        exit_status: Some(9),
        action: "failed; restarting in 1s".into(),
    }];
    let mut out = Vec::new();
    render::human(&mut out, "prod", &[report("a", Some(st))])?;
    let text = text(&out);
    assert!(
        text.contains("    api@2  active/running  api@2.service\n"),
        "{text}"
    );
    assert!(text.contains("api: 1 restart(s) after failures"), "{text}");
    assert!(text.contains("redis: stopped by hostctl stop"), "{text}");
    assert!(
        text.contains(
            "2026-11-22T03:00:00Z api@2.service signal (signal 9): failed; restarting in 1s"
        ),
        "{text}"
    );
    Ok(())
}

#[test]
fn json_output_has_the_documented_shape() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    crate::output::json(
        &mut out,
        &[
            report("a", Some(status(HealthStatus::Healthy))),
            report("b", None),
        ],
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(v[0]["host"], "a");
    assert_eq!(v[0]["reachable"], true);
    assert_eq!(v[0]["status"]["health"]["status"], "healthy");
    assert!(v[0].get("error").is_none());
    assert_eq!(v[1]["reachable"], false);
    assert_eq!(v[1]["error"], "b: ssh failed: Connection timed out");
    assert!(v[1].get("status").is_none());
    Ok(())
}

#[tokio::test]
async fn queries_hosts_in_parallel_and_keeps_config_order() -> Result<(), Box<dyn std::error::Error>>
{
    let body = serde_json::to_string(&status(HealthStatus::Healthy))?;
    let answers = [("slow", ""), ("good", ""), ("nowhere", "")];
    let fake = FakeHosts::new("status", &answers, &body)?
        .hanging(&["slow"])
        .unreachable(&["nowhere"]);
    let started = std::time::Instant::now();
    let reports = query_all(&fake.transport, &fake.hosts, Duration::from_secs(2)).await;
    let elapsed = started.elapsed();

    let names: Vec<&str> = reports.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(names, ["slow", "good", "nowhere"]);
    assert_eq!(
        reports[0].error.as_deref(),
        Some("slow: no answer within 2s")
    );
    assert!(reports[1].status.is_some(), "{:?}", reports[1]);
    let nowhere = &reports[2];
    assert!(!nowhere.reachable);
    assert!(
        nowhere
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("nowhere port 22: Connection refused")
    );
    assert!(
        nowhere
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("no [hosts.nowhere] table")
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?}: not parallel?"
    );
    assert_eq!(outcome(&reports), Outcome::Trouble);
    Ok(())
}

#[test]
fn human_output_names_the_last_apply_of_the_configuration() -> Result<(), Box<dyn std::error::Error>>
{
    let mut st = status(HealthStatus::Healthy);
    st.health.components.clear();
    st.last_apply = Some(hostd_api::ApplyRecord {
        at: "2026-12-07T19:43:24Z".into(),
        requested_by: "ana@laptop".into(),
        caller: None,
        source: "hostd/prod.toml".into(),
        digest: "b07ee00aa29032c000c4ae34664c23240c9e9f70eae4c9f69f4e9fa75b059f92".into(),
        previous_digest: String::new(),
        outcome: hostd_api::ApplyOutcome::RolledBack,
        actions: Vec::new(),
        seconds: 1.5,
        error: Some("web did not become healthy".into()),
    });
    let mut out = Vec::new();
    render::human(&mut out, "prod", &[report("a", Some(st))])?;
    let text = text(&out);
    assert!(
        text.contains(
            "    config rolled_back 2026-12-07T19:43:24Z from hostd/prod.toml by ana@laptop (b07ee00aa290)\n"
        ),
        "{text}"
    );
    Ok(())
}

#[test]
fn human_output_shows_the_shipping_lag_and_why_it_grows() -> Result<(), Box<dyn std::error::Error>>
{
    let mut st = status(HealthStatus::Healthy);
    st.health.components.clear();
    st.shipping = Some(hostd_api::ShippingStatus {
        log_group: "/hostd/prod".into(),
        lag_seconds: 420,
        max_lag_seconds: 300,
        backlog_bytes: 5000,
        dropped_lines: 3,
        problem: Some("cannot reach CloudWatch Logs: timed out".into()),
        ..hostd_api::ShippingStatus::default()
    });
    let mut out = Vec::new();
    render::human(&mut out, "prod", &[report("a", Some(st))])?;
    let text = text(&out);
    assert!(
        text.contains(
            "    cloudwatch /hostd/prod lag 7m, backlog 5 KiB, 3 lines dropped: cannot reach CloudWatch Logs: timed out\n"
        ),
        "{text}"
    );
    Ok(())
}
