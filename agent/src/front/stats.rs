//! Requests per service by status class and a latency histogram: what a
//! CloudWatch alarm on the 5xx rate, and a p99, are computed from.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::StatusCode;
use serde::Serialize;

/// Upper bounds of the latency buckets, in milliseconds; a last bucket
/// holds the rest.
pub const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

#[derive(Default)]
struct Counters {
    /// 1xx..5xx.
    classes: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_micros: AtomicU64,
}

#[derive(Default)]
pub struct Stats {
    services: Mutex<BTreeMap<String, std::sync::Arc<Counters>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ServiceStats {
    /// `"2xx"` to its count.
    pub requests: BTreeMap<String, u64>,
    /// Counts per bucket of [`BUCKETS_MS`] (not cumulative), then the rest.
    pub latency_buckets: Vec<u64>,
    pub latency_sum_seconds: f64,
}

impl Stats {
    pub fn record(&self, service: &str, status: StatusCode, took: Duration) {
        let counters = {
            let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
            // The service's name is allocated once, not per request.
            match services.get(service) {
                Some(c) => std::sync::Arc::clone(c),
                None => std::sync::Arc::clone(services.entry(service.to_owned()).or_default()),
            }
        };
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        counters.classes[class].fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_MS
            .iter()
            .position(|&b| ms < b)
            .unwrap_or(BUCKETS_MS.len());
        counters.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        counters.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BTreeMap<String, ServiceStats> {
        let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services
            .iter()
            .map(|(name, c)| {
                let requests = c
                    .classes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (format!("{}xx", i + 1), n.load(Ordering::Relaxed)))
                    .collect();
                let latency_buckets = c
                    .buckets
                    .iter()
                    .map(|n| n.load(Ordering::Relaxed))
                    .collect();
                let sum = c.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                (
                    name.clone(),
                    ServiceStats {
                        requests,
                        latency_buckets,
                        latency_sum_seconds: sum,
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_buckets_count_each_request_once() {
        let s = Stats::default();
        s.record("web", StatusCode::OK, Duration::from_micros(300));
        s.record("web", StatusCode::BAD_GATEWAY, Duration::from_millis(30));
        s.record("web", StatusCode::OK, Duration::from_secs(9));
        let web = &s.snapshot()["web"];
        assert_eq!(web.requests["2xx"], 2);
        assert_eq!(web.requests["5xx"], 1);
        assert_eq!(web.latency_buckets[0], 1, "under 1 ms");
        assert_eq!(web.latency_buckets[5], 1, "25 to 50 ms");
        assert_eq!(web.latency_buckets[12], 1, "beyond the last bound");
    }
}
