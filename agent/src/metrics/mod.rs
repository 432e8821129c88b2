//! `GET /metrics` (Prometheus text format) and CloudWatch Embedded Metric
//! Format lines, both built from the health checker's cached snapshot and
//! the manager's view: scraping never runs a check.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;

use hostd_api::{ActiveState, HealthStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use std::sync::Arc;

use tokio::sync::watch;

use serde_json::{Map, Value, json};

use crate::config::{CurrentConfig, MetricsConfig};
use crate::desired::ManagerView;
use crate::health::Snapshot;
use crate::lifetime::Lifetime;

pub mod emf;
pub mod front;
pub mod http;

/// What `/metrics` and the EMF writer render.
#[derive(Clone)]
pub struct Deps {
    pub snapshot: watch::Receiver<Snapshot>,
    pub view: watch::Receiver<ManagerView>,
    /// hostd's front, when an app has a public port: its counts per app.
    pub front: Option<Arc<crate::front::client::LiveFront>>,
}

#[derive(Clone)]
pub struct MetricsHandle {
    snapshot: watch::Receiver<Snapshot>,
    view: watch::Receiver<ManagerView>,
    front: Option<Arc<crate::front::client::LiveFront>>,
}

/// Runs the EMF writer while `metrics.emf_path` is set, starting it again
/// when an apply changes `[metrics]` (and only then); `/metrics` needs no
/// task of its own.
pub fn spawn(config: CurrentConfig, deps: Deps, lifetime: &Lifetime) -> MetricsHandle {
    let writer_deps = deps.clone();
    let ending = lifetime.clone();
    let mut changes = config.clone();
    lifetime.spawn("EMF writer", async move {
        loop {
            let current = config.get();
            let settings = current.metrics.clone();
            let writer = async {
                match settings.emf_path.clone() {
                    Some(path) => {
                        let w = emf::write_every(
                            Arc::clone(&current),
                            path,
                            &writer_deps,
                            ending.clone(),
                        );
                        w.await;
                    }
                    None => std::future::pending().await,
                }
            };
            let changed = async {
                loop {
                    changes.changed().await;
                    if changes.get().metrics != settings {
                        return;
                    }
                }
            };
            tokio::select! {
                () = writer => return,
                () = changed => tracing::info!("[metrics] changed: EMF lines follow the new settings"),
                () = ending.ending() => return,
            }
        }
    });
    MetricsHandle {
        snapshot: deps.snapshot,
        view: deps.view,
        front: deps.front,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot encode metrics")]
    Encode(#[from] std::fmt::Error),
    #[error("cannot append metrics to {path} (metrics.emf_path)")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// 0 healthy, 1 degraded, 2 unhealthy: alert on `> 0` or `== 2`.
pub fn health_value(s: HealthStatus) -> i64 {
    match s {
        HealthStatus::Healthy => 0,
        HealthStatus::Degraded => 1,
        HealthStatus::Unhealthy => 2,
    }
}

pub fn unit_up(state: ActiveState) -> bool {
    matches!(
        state,
        ActiveState::Active | ActiveState::Reloading | ActiveState::Refreshing
    )
}

/// Every service name the view knows, so a service with no
/// restarts still has a zero series (alerts on `increase()` need one).
pub(crate) fn services(view: &ManagerView) -> BTreeSet<String> {
    view.desired
        .services
        .keys()
        .chain(view.restarts.keys())
        .chain(view.failures.keys())
        .cloned()
        .collect()
}

/// One document: `_aws` metadata, then dimension values and metric values
/// as top-level members (the spec's "target members").
pub(crate) fn emf_document(
    cfg: &MetricsConfig,
    timestamp_ms: u64,
    extra_dims: &[(&str, String)],
    metrics: &[(&str, &str, f64)],
) -> Value {
    let mut keys: Vec<&str> = cfg.dimensions.keys().map(String::as_str).collect();
    keys.extend(extra_dims.iter().map(|(k, _)| *k));
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": cfg.namespace,
                "Dimensions": [keys],
                "Metrics": metrics
                    .iter()
                    .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in &cfg.dimensions {
        doc.insert(k.clone(), Value::String(v.clone()));
    }
    for (k, v) in extra_dims {
        doc.insert((*k).to_owned(), Value::String(v.clone()));
    }
    for (name, _, v) in metrics {
        doc.insert((*name).to_owned(), json!(v));
    }
    Value::Object(doc)
}

type Labels = Vec<(&'static str, String)>;

/// Per job: whether its last run succeeded and when it started, so an
/// alert can fire on a failure or on a job gone quiet.
fn register_jobs(reg: &mut Registry, jobs: &[hostd_api::JobStatus]) {
    let ok = Family::<Labels, Gauge>::default();
    let started = Family::<Labels, FloatGauge>::default();
    for j in jobs {
        let Some(run) = &j.last_run else { continue };
        let l = vec![("job", j.name.clone())];
        ok.get_or_create(&l).set(i64::from(run.succeeded()));
        if let Ok(t) = humantime::parse_rfc3339(&run.started)
            && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
        {
            started.get_or_create(&l).set(d.as_secs_f64());
        }
    }
    reg.register(
        "hostd_job_last_run_success",
        "1 if the job's last finished run succeeded",
        ok,
    );
    reg.register(
        "hostd_job_last_run_started_seconds",
        "When the job's last finished run started (Unix time)",
        started,
    );
}
type FloatGauge = Gauge<f64, AtomicU64>;

/// The Prometheus text exposition of one snapshot. A registry per scrape:
/// the figures are a snapshot, not live counters hostd increments, and a
/// scrape every few seconds makes the allocation irrelevant.
pub fn render(snap: &Snapshot, view: &ManagerView) -> Result<String, MetricsError> {
    let mut reg = Registry::default();

    let up = Gauge::<i64>::default();
    up.set(1);
    reg.register("hostd_up", "1 while hostd is serving", up);

    let units = Family::<Labels, Gauge>::default();
    for u in &snap.units {
        units
            .get_or_create(&vec![
                ("service", u.service.clone()),
                ("unit", u.unit.clone()),
            ])
            .set(i64::from(unit_up(u.active_state)));
    }
    reg.register("hostd_unit_up", "1 if the unit is active", units);

    let restarts = Family::<Labels, Counter>::default();
    let failures = Family::<Labels, Counter>::default();
    for s in services(view) {
        let l = vec![("service", s.clone())];
        restarts
            .get_or_create(&l)
            .inc_by(view.restarts.get(&s).copied().unwrap_or(0));
        failures
            .get_or_create(&l)
            .inc_by(view.failures.get(&s).copied().unwrap_or(0));
    }
    reg.register(
        "hostd_service_restarts",
        "Restarts hostd made after failures since it started",
        restarts,
    );
    reg.register(
        "hostd_service_failures",
        "Unit failures hostd saw since it started",
        failures,
    );

    let components = Family::<Labels, Gauge>::default();
    for c in &snap.report.components {
        components
            .get_or_create(&vec![("component", c.name.clone())])
            .set(health_value(c.status));
    }
    reg.register(
        "hostd_component_health",
        "0 healthy, 1 degraded, 2 unhealthy",
        components,
    );
    register_jobs(&mut reg, &snap.jobs);
    let overall = Gauge::<i64>::default();
    overall.set(health_value(snap.report.status));
    reg.register(
        "hostd_health",
        "Overall health: 0 healthy, 1 degraded, 2 unhealthy",
        overall,
    );

    let disks = Family::<Labels, FloatGauge>::default();
    for d in &snap.system.disks {
        if let Some(r) = d.used_ratio {
            disks
                .get_or_create(&vec![("path", d.path.display().to_string())])
                .set(r);
        }
    }
    reg.register(
        "hostd_disk_used_ratio",
        "Used share of the file system holding each checks.disk.paths entry",
        disks,
    );
    let single = |reg: &mut Registry, name: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            let g = FloatGauge::default();
            g.set(v);
            reg.register(name, help, g);
        }
    };
    single(
        &mut reg,
        "hostd_memory_used_ratio",
        "Memory in use (total minus available) over total",
        snap.system.memory_used_ratio,
    );
    single(
        &mut reg,
        "hostd_load1",
        "1-minute load average",
        snap.system.load1,
    );
    single(
        &mut reg,
        "hostd_cpu_usage_ratio",
        "CPU use over all CPUs between the last two checks",
        snap.system.cpu_usage_ratio,
    );

    if let Some(b) = &snap.backup {
        backup_series(&mut reg, b);
    }

    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

fn backup_series(reg: &mut Registry, b: &crate::backup::health::BackupFigures) {
    let float = |reg: &mut Registry, name: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            let g = FloatGauge::default();
            g.set(v);
            reg.register(name, help, g);
        }
    };
    let flag = |v: bool| if v { 1.0 } else { 0.0 };
    float(
        reg,
        "hostd_backup_age_seconds",
        "Since the last successful backup (since backups were configured, if none)",
        b.age_seconds,
    );
    float(
        reg,
        "hostd_backup_drill_age_seconds",
        "Since the last successful restore drill (since backups were configured, if none)",
        b.drill_age_seconds,
    );
    float(
        reg,
        "hostd_backup_last_run_success",
        "1 if the last backup run succeeded, 0 if it failed",
        b.last_run_ok.map(flag),
    );
    float(
        reg,
        "hostd_backup_last_drill_success",
        "1 if the last restore drill passed, 0 if it failed",
        b.last_drill_ok.map(flag),
    );
    #[allow(clippy::cast_precision_loss)]
    let added = b.last_run_added_bytes as f64;
    float(
        reg,
        "hostd_backup_last_run_added_bytes",
        "Bytes the last run added to the repository (after dedup and compression)",
        Some(added),
    );
    float(
        reg,
        "hostd_backup_running",
        "1 while a backup runs",
        Some(flag(b.running)),
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checks::SystemSample;
    use crate::checks::system::DiskSample;
    use hostd_api::{ComponentHealth, HealthReport, UnitStatus};

    pub(crate) fn snapshot() -> Snapshot {
        let mut s = Snapshot::new(
            vec![
                UnitStatus {
                    service: "redis".into(),
                    unit: "redis-server.service".into(),
                    instance: None,
                    active_state: ActiveState::Active,
                    sub_state: "running".into(),
                },
                UnitStatus {
                    service: "api".into(),
                    unit: "api@1.service".into(),
                    instance: Some(1),
                    active_state: ActiveState::Failed,
                    sub_state: "failed".into(),
                },
            ],
            HealthReport {
                status: HealthStatus::Unhealthy,
                checked_at: "2026-11-22T00:00:00Z".into(),
                components: vec![
                    ComponentHealth {
                        name: "unit:api@1".into(),
                        status: HealthStatus::Unhealthy,
                        reason: Some("api@1.service is failed (failed)".into()),
                    },
                    ComponentHealth {
                        name: "disk:/data".into(),
                        status: HealthStatus::Degraded,
                        reason: Some("x".into()),
                    },
                ],
            },
        );
        s.system = SystemSample {
            disks: vec![DiskSample {
                path: "/data".into(),
                mount_point: Some("/".into()),
                used_ratio: Some(0.85),
            }],
            memory_used_ratio: Some(0.25),
            load1: Some(0.5),
            cpus: 2,
            cpu_usage_ratio: Some(0.125),
        };
        s.backup = Some(crate::backup::health::BackupFigures {
            age_seconds: Some(93_600.0),
            drill_age_seconds: Some(90_000.0),
            last_run_ok: Some(false),
            last_drill_ok: Some(true),
            last_run_added_bytes: 2048,
            running: false,
        });
        s
    }

    pub(crate) fn view() -> ManagerView {
        let mut v = ManagerView::default();
        v.restarts.insert("api".into(), 2);
        v.failures.insert("api".into(), 3);
        v
    }

    #[test]
    fn exposition_has_every_series_with_its_labels() -> Result<(), MetricsError> {
        let text = render(&snapshot(), &view())?;
        for line in [
            "hostd_up 1",
            "hostd_unit_up{service=\"redis\",unit=\"redis-server.service\"} 1",
            "hostd_unit_up{service=\"api\",unit=\"api@1.service\"} 0",
            "hostd_service_restarts_total{service=\"api\"} 2",
            "hostd_service_failures_total{service=\"api\"} 3",
            "hostd_component_health{component=\"unit:api@1\"} 2",
            "hostd_component_health{component=\"disk:/data\"} 1",
            "hostd_health 2",
            "hostd_disk_used_ratio{path=\"/data\"} 0.85",
            "hostd_memory_used_ratio 0.25",
            "hostd_backup_age_seconds 93600.0",
            "hostd_backup_drill_age_seconds 90000.0",
            "hostd_backup_last_run_success 0.0",
            "hostd_backup_last_drill_success 1.0",
            "hostd_backup_last_run_added_bytes 2048.0",
            "hostd_backup_running 0.0",
            "hostd_load1 0.5",
            "hostd_cpu_usage_ratio 0.125",
            "# TYPE hostd_service_restarts counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        Ok(())
    }
}
