//! The front's figures in `/metrics` and the EMF lines: requests per app by
//! status class, and their latency, read from the front's control socket
//! when a scrape or a write happens (the front counts; hostd only relays).
//! What a CloudWatch alarm on an app's 5xx rate, or a p99, is built on.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde_json::Value;

use crate::config::MetricsConfig;
use crate::front::FrontStats;
use crate::front::client::LiveFront;
use crate::front::stats::{BUCKETS_MS, ServiceStats};

/// A scrape or an EMF write waits no longer for the front.
const FRONT_TIMEOUT: Duration = Duration::from_secs(1);

/// The front's stats now, or none (no front, or it did not answer: the
/// rest of the metrics are served all the same).
pub async fn fetch(front: Option<&LiveFront>) -> Option<FrontStats> {
    let front = front?;
    match tokio::time::timeout(FRONT_TIMEOUT, front.stats()).await {
        Ok(Ok(stats)) => Some(stats),
        Ok(Err(e)) => {
            tracing::debug!("no figures from the front: {}", hostd_api::error_chain(&e));
            None
        }
        Err(_) => None,
    }
}

/// `hostd_front_requests_total{service,class}` and the
/// `hostd_front_request_duration_seconds` histogram, inserted before the
/// OpenMetrics text's `# EOF`.
pub fn append_openmetrics(mut text: String, stats: &FrontStats) -> String {
    if stats.services.is_empty() {
        return text;
    }
    if let Some(stripped) = text.strip_suffix("# EOF\n") {
        text.truncate(stripped.len());
    }
    let mut out = text;
    let _ = writeln!(
        out,
        "# HELP hostd_front_requests Requests the front answered, by app and status class."
    );
    let _ = writeln!(out, "# TYPE hostd_front_requests counter");
    for (service, s) in &stats.services {
        for (class, n) in &s.requests {
            let _ = writeln!(
                out,
                "hostd_front_requests_total{{service=\"{service}\",class=\"{class}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP hostd_front_request_duration_seconds Time from a request's arrival at the front to its response head, by app."
    );
    let _ = writeln!(out, "# TYPE hostd_front_request_duration_seconds histogram");
    for (service, s) in &stats.services {
        let mut cumulative = 0;
        for (i, n) in s.latency_buckets.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS_MS
                .get(i)
                .map_or("+Inf".to_owned(), |ms| format!("{}", *ms as f64 / 1000.0));
            let _ = writeln!(
                out,
                "hostd_front_request_duration_seconds_bucket{{service=\"{service}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "hostd_front_request_duration_seconds_sum{{service=\"{service}\"}} {}",
            s.latency_sum_seconds
        );
        let _ = writeln!(
            out,
            "hostd_front_request_duration_seconds_count{{service=\"{service}\"}} {cumulative}"
        );
    }
    out.push_str("# EOF\n");
    out
}

/// The front's figures at the previous EMF write, to write differences.
#[derive(Debug, Default)]
pub struct Previous(BTreeMap<String, ServiceStats>);

/// One EMF document per app: requests, 4xx and 5xx since the previous
/// write, and the p99 of those requests (the upper bound of its bucket).
pub fn emf_documents(
    cfg: &MetricsConfig,
    timestamp_ms: u64,
    stats: &FrontStats,
    prev: &mut Previous,
) -> Vec<Value> {
    let mut out = Vec::new();
    for (service, now) in &stats.services {
        let before = prev
            .0
            .insert(service.clone(), now.clone())
            .unwrap_or_default();
        // A lower count means the front restarted and counts from zero.
        let delta = |now: u64, before: u64| if now >= before { now - before } else { now };
        let class = |s: &ServiceStats, c: &str| s.requests.get(c).copied().unwrap_or(0);
        let total = |s: &ServiceStats| s.requests.values().sum::<u64>();
        let buckets: Vec<u64> = now
            .latency_buckets
            .iter()
            .enumerate()
            .map(|(i, n)| delta(*n, before.latency_buckets.get(i).copied().unwrap_or(0)))
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let mut metrics = vec![
            (
                "FrontRequests",
                "Count",
                delta(total(now), total(&before)) as f64,
            ),
            (
                "FrontRequests4xx",
                "Count",
                delta(class(now, "4xx"), class(&before, "4xx")) as f64,
            ),
            (
                "FrontRequests5xx",
                "Count",
                delta(class(now, "5xx"), class(&before, "5xx")) as f64,
            ),
        ];
        if let Some(p99) = p99_ms(&buckets) {
            metrics.push(("FrontLatencyP99", "Milliseconds", p99));
        }
        out.push(super::emf_document(
            cfg,
            timestamp_ms,
            &[("Service", service.clone())],
            &metrics,
        ));
    }
    out
}

/// The upper bound of the bucket holding the 99th percentile; the last
/// bound for the open-ended bucket. None without requests.
fn p99_ms(buckets: &[u64]) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = total - total / 100;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let last = BUCKETS_MS.last().copied().unwrap_or(0);
            #[allow(clippy::cast_precision_loss)]
            return Some(BUCKETS_MS.get(i).copied().unwrap_or(last) as f64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(ok: u64, errors: u64) -> FrontStats {
        let mut buckets = vec![0; BUCKETS_MS.len() + 1];
        buckets[1] = ok;
        buckets[6] = errors;
        FrontStats {
            services: [(
                "web".to_owned(),
                ServiceStats {
                    requests: [("2xx".to_owned(), ok), ("5xx".to_owned(), errors)].into(),
                    latency_buckets: buckets,
                    latency_sum_seconds: 0.5,
                },
            )]
            .into(),
            in_flight: vec![],
        }
    }

    #[test]
    fn openmetrics_gets_counts_and_a_cumulative_histogram_before_eof() {
        let text = append_openmetrics("hostd_up 1\n# EOF\n".into(), &stats(90, 10));
        assert!(
            text.contains("hostd_front_requests_total{service=\"web\",class=\"5xx\"} 10\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "hostd_front_request_duration_seconds_bucket{service=\"web\",le=\"0.002\"} 90\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "hostd_front_request_duration_seconds_bucket{service=\"web\",le=\"+Inf\"} 100\n"
            ),
            "{text}"
        );
        assert!(text.contains("hostd_front_request_duration_seconds_count{service=\"web\"} 100\n"));
        assert!(text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1);
    }

    #[test]
    fn emf_writes_what_happened_since_the_last_write() {
        let cfg = MetricsConfig::default();
        let mut prev = Previous::default();
        let first = emf_documents(&cfg, 1, &stats(90, 10), &mut prev);
        assert_eq!(first[0]["FrontRequests5xx"], 10.0);
        assert_eq!(first[0]["FrontLatencyP99"], 100.0, "the 5xx were slow");
        let second = emf_documents(&cfg, 2, &stats(190, 10), &mut prev);
        assert_eq!(second[0]["FrontRequests"], 100.0);
        assert_eq!(second[0]["FrontRequests5xx"], 0.0);
        assert_eq!(second[0]["FrontLatencyP99"], 2.0);
        assert_eq!(second[0]["Service"], "web");
    }
}
