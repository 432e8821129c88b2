//! CloudWatch Embedded Metric Format: JSON documents, one per line, that
//! the CloudWatch agent ships to CloudWatch Logs, where the metrics are
//! extracted.
//!
//! A document can carry one value per dimension key, so each dimension
//! combination gets its own line: the host, each unit, each service, each
//! component and each disk path. Restarts and failures are written as the
//! count since the previous write (what CloudWatch's Sum statistic and
//! alarms expect), not as running totals.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use tokio::sync::watch;

use super::{MetricsError, emf_document as document, health_value, services, unit_up};
use crate::config::{Config, MetricsConfig};
use crate::desired::ManagerView;
use crate::health::Snapshot;
use crate::lifetime::Lifetime;

/// Restart and failure totals at the previous write, to emit differences.
#[derive(Debug, Default)]
pub struct Previous {
    restarts: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
}

/// The documents for one write.
pub fn documents(
    snap: &Snapshot,
    view: &ManagerView,
    cfg: &MetricsConfig,
    timestamp_ms: u64,
    prev: &mut Previous,
) -> Vec<Value> {
    let mut out = Vec::new();
    let up = snap
        .units
        .iter()
        .filter(|u| unit_up(u.active_state))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let (up, down) = (up as f64, (snap.units.len() - up) as f64);
    let mut host = vec![
        (
            "HealthStatus",
            "None",
            health_value(snap.report.status) as f64,
        ),
        ("UnitsUp", "Count", up),
        ("UnitsDown", "Count", down),
    ];
    let s = &snap.system;
    for (name, v) in [
        ("MemoryUsedPercent", s.memory_used_ratio),
        ("CpuUsedPercent", s.cpu_usage_ratio),
    ] {
        if let Some(v) = v {
            host.push((name, "Percent", v * 100.0));
        }
    }
    if let Some(l) = s.load1 {
        host.push(("Load1", "None", l));
    }
    if let Some(b) = &snap.backup {
        let flag = |v: bool| if v { 1.0 } else { 0.0 };
        for (name, unit, v) in [
            ("BackupAgeSeconds", "Seconds", b.age_seconds),
            ("DrillAgeSeconds", "Seconds", b.drill_age_seconds),
            ("BackupLastRunSuccess", "None", b.last_run_ok.map(flag)),
            ("DrillLastSuccess", "None", b.last_drill_ok.map(flag)),
        ] {
            if let Some(v) = v {
                host.push((name, unit, v));
            }
        }
    }
    out.push(document(cfg, timestamp_ms, &[], &host));

    for u in &snap.units {
        let dims = [("Service", u.service.clone()), ("Unit", u.unit.clone())];
        let v = if unit_up(u.active_state) { 1.0 } else { 0.0 };
        out.push(document(cfg, timestamp_ms, &dims, &[("UnitUp", "None", v)]));
    }
    for name in services(view) {
        let restarts = view.restarts.get(&name).copied().unwrap_or(0);
        let failures = view.failures.get(&name).copied().unwrap_or(0);
        let delta = |seen: &mut BTreeMap<String, u64>, now: u64| {
            // A lower total means hostd restarted and counts from zero again.
            let before = seen.insert(name.clone(), now).unwrap_or(0);
            #[allow(clippy::cast_precision_loss)]
            let d = if now >= before { now - before } else { now } as f64;
            d
        };
        let metrics = [
            ("Restarts", "Count", delta(&mut prev.restarts, restarts)),
            ("Failures", "Count", delta(&mut prev.failures, failures)),
        ];
        out.push(document(
            cfg,
            timestamp_ms,
            &[("Service", name.clone())],
            &metrics,
        ));
    }
    for c in &snap.report.components {
        let v = health_value(c.status) as f64;
        out.push(document(
            cfg,
            timestamp_ms,
            &[("Component", c.name.clone())],
            &[("HealthStatus", "None", v)],
        ));
    }
    // A job's last finished run: 1 succeeded, 0 failed (alarm on < 1).
    for j in &snap.jobs {
        let Some(run) = j.last_run.as_ref().filter(|r| r.finished.is_some()) else {
            continue;
        };
        let v = if run.succeeded() { 1.0 } else { 0.0 };
        out.push(document(
            cfg,
            timestamp_ms,
            &[("Job", j.name.clone())],
            &[("JobLastRunSuccess", "None", v)],
        ));
    }
    for d in &s.disks {
        if let Some(r) = d.used_ratio {
            out.push(document(
                cfg,
                timestamp_ms,
                &[("Path", d.path.display().to_string())],
                &[("DiskUsedPercent", "Percent", r * 100.0)],
            ));
        }
    }
    out
}

/// Appends `lines` in one write to `path`, creating it 0640. Opened per
/// write so a log rotation that moves the file is followed.
pub fn append(path: &Path, lines: &[Value]) -> Result<(), MetricsError> {
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l.to_string());
        buf.push('\n');
    }
    let err = |source| MetricsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(err)?;
    f.write_all(buf.as_bytes()).map_err(err)
}

/// Builds each interval's documents, keeping what the counts since the
/// previous one need: one per destination (the file, CloudWatch).
pub struct Collector {
    snapshot: watch::Receiver<Snapshot>,
    view: watch::Receiver<ManagerView>,
    front: Option<Arc<crate::front::client::LiveFront>>,
    prev: Previous,
    prev_front: super::front::Previous,
    /// A dimension added when `[metrics] dimensions` names none.
    default_dimension: Option<(String, String)>,
}

impl Collector {
    pub fn new(deps: &super::Deps) -> Self {
        Self {
            snapshot: deps.snapshot.clone(),
            view: deps.view.clone(),
            front: deps.front.clone(),
            prev: Previous::default(),
            prev_front: super::front::Previous::default(),
            default_dimension: None,
        }
    }

    /// `name = value` on every document when the configuration sets no
    /// dimension of its own (the instance id, for CloudWatch).
    pub fn dimensions_default(&mut self, name: &str, value: Option<String>) {
        self.default_dimension = value.map(|v| (name.to_owned(), v));
    }

    pub async fn collect(&mut self, cfg: &MetricsConfig) -> Vec<Value> {
        let mut cfg = std::borrow::Cow::Borrowed(cfg);
        if let Some((k, v)) = &self.default_dimension
            && cfg.dimensions.is_empty()
        {
            cfg.to_mut().dimensions.insert(k.clone(), v.clone());
        }
        let now_ms = hostd_api::time::unix_ms(SystemTime::now());
        let snap = self.snapshot.borrow().clone();
        let current = self.view.borrow().clone();
        let mut docs = documents(&snap, &current, &cfg, now_ms, &mut self.prev);
        if let Some(stats) = super::front::fetch(self.front.as_deref()).await {
            docs.extend(super::front::emf_documents(
                &cfg,
                now_ms,
                &stats,
                &mut self.prev_front,
            ));
        }
        docs
    }
}

/// Writes every `metrics.emf_interval` until hostd stops. A failed write
/// is logged and retried at the next interval: metrics must never take
/// hostd down.
pub async fn write_every(
    config: Arc<Config>,
    path: std::path::PathBuf,
    deps: &super::Deps,
    lifetime: Lifetime,
) {
    let mut ticker = tokio::time::interval(config.metrics.emf_interval.0);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collector = Collector::new(deps);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = lifetime.ending() => return,
        }
        let docs = collector.collect(&config.metrics).await;
        let path = path.clone();
        let written = lifetime
            .spawn_blocking("EMF write", move || append(&path, &docs))
            .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %hostd_api::error_chain(&e), "EMF write failed");
            }
            Err(e) => tracing::warn!(error = %e, "EMF write task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{snapshot, view};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn cfg() -> MetricsConfig {
        let mut c = MetricsConfig {
            namespace: "hostd".into(),
            ..MetricsConfig::default()
        };
        c.dimensions.insert("InstanceId".into(), "i-0abc".into());
        c
    }

    #[test]
    fn host_document_matches_the_emf_specification() {
        let docs = documents(
            &snapshot(),
            &view(),
            &cfg(),
            1_700_000_000_123,
            &mut Previous::default(),
        );
        let expected = json!({
            "_aws": {
                "Timestamp": 1_700_000_000_123_u64,
                "CloudWatchMetrics": [{
                    "Namespace": "hostd",
                    "Dimensions": [["InstanceId"]],
                    "Metrics": [
                        {"Name": "HealthStatus", "Unit": "None"},
                        {"Name": "UnitsUp", "Unit": "Count"},
                        {"Name": "UnitsDown", "Unit": "Count"},
                        {"Name": "MemoryUsedPercent", "Unit": "Percent"},
                        {"Name": "CpuUsedPercent", "Unit": "Percent"},
                        {"Name": "Load1", "Unit": "None"},
                        {"Name": "BackupAgeSeconds", "Unit": "Seconds"},
                        {"Name": "DrillAgeSeconds", "Unit": "Seconds"},
                        {"Name": "BackupLastRunSuccess", "Unit": "None"},
                        {"Name": "DrillLastSuccess", "Unit": "None"}
                    ]
                }]
            },
            "InstanceId": "i-0abc",
            "HealthStatus": 2.0,
            "UnitsUp": 1.0,
            "UnitsDown": 1.0,
            "MemoryUsedPercent": 25.0,
            "CpuUsedPercent": 12.5,
            "Load1": 0.5,
            "BackupAgeSeconds": 93_600.0,
            "DrillAgeSeconds": 90_000.0,
            "BackupLastRunSuccess": 0.0,
            "DrillLastSuccess": 1.0
        });
        assert_eq!(docs[0], expected);
    }

    #[test]
    fn every_document_declares_dimensions_and_metrics_it_carries() {
        let docs = documents(&snapshot(), &view(), &cfg(), 1, &mut Previous::default());
        // host, 2 units, 2 services... (api and redis known), 2 components, 1 disk
        assert!(docs.len() >= 7, "{docs:#?}");
        for d in &docs {
            let directive = &d["_aws"]["CloudWatchMetrics"][0];
            assert!(d["_aws"]["Timestamp"].is_u64(), "{d}");
            for dims in directive["Dimensions"].as_array().into_iter().flatten() {
                let keys = dims.as_array().map(Vec::len).unwrap_or(31);
                assert!(keys <= 30, "{d}");
                for k in dims.as_array().into_iter().flatten() {
                    let k = k.as_str().unwrap_or_default();
                    assert!(d[k].is_string(), "dimension {k} has no string value: {d}");
                }
            }
            for m in directive["Metrics"].as_array().into_iter().flatten() {
                let name = m["Name"].as_str().unwrap_or_default();
                assert!(d[name].is_number(), "metric {name} has no value: {d}");
            }
        }
        let unit = docs
            .iter()
            .find(|d| d["Unit"] == "api@1.service")
            .map(|d| (d["Service"].clone(), d["UnitUp"].clone()));
        assert_eq!(unit, Some((json!("api"), json!(0.0))));
    }

    #[test]
    fn restarts_and_failures_are_counts_since_the_previous_write() {
        let mut prev = Previous::default();
        let api = |docs: &[Value]| {
            docs.iter()
                .find(|d| d["Service"] == "api" && d.get("Restarts").is_some())
                .map(|d| (d["Restarts"].clone(), d["Failures"].clone()))
        };
        let first = documents(&snapshot(), &view(), &cfg(), 1, &mut prev);
        assert_eq!(api(&first), Some((json!(2.0), json!(3.0))));
        let mut v = view();
        v.restarts.insert("api".into(), 5);
        let second = documents(&snapshot(), &v, &cfg(), 2, &mut prev);
        assert_eq!(api(&second), Some((json!(3.0), json!(0.0))));
    }

    #[test]
    fn a_finished_job_run_is_one_for_success_and_zero_for_failure() {
        let job = |name: &str, result: &str, finished: bool| hostd_api::JobStatus {
            name: name.into(),
            schedule: "hourly".into(),
            command: "x".into(),
            service: None,
            unit: format!("hostd-job-{name}.service"),
            running: !finished,
            last_run: Some(hostd_api::JobRun {
                started: "2026-12-07T00:00:00Z".into(),
                finished: finished.then(|| "2026-12-07T00:00:01Z".into()),
                result: result.into(),
                exit_code: None,
                trigger: "timer".into(),
            }),
            next_run: None,
            health: hostd_api::HealthStatus::Healthy,
            reason: None,
        };
        let mut snap = snapshot();
        snap.jobs = vec![
            job("ok", "success", true),
            job("bad", "exit-code", true),
            job("going", "", false),
        ];
        let docs = documents(&snap, &view(), &cfg(), 1, &mut Previous::default());
        let runs: Vec<_> = docs
            .iter()
            .filter(|d| d.get("JobLastRunSuccess").is_some())
            .map(|d| (d["Job"].clone(), d["JobLastRunSuccess"].clone()))
            .collect();
        assert_eq!(
            runs,
            vec![(json!("ok"), json!(1.0)), (json!("bad"), json!(0.0))]
        );
    }

    #[test]
    fn append_creates_the_file_0640_and_adds_lines() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("emf.log");
        append(&path, &[json!({"a": 1})])?;
        append(&path, &[json!({"b": 2}), json!({"c": 3})])?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        // The umask may only remove bits.
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
        let err = append(&dir.path().join("no/such/dir"), &[json!({})]);
        assert!(matches!(err, Err(MetricsError::Write { .. })));
        Ok(())
    }
}
