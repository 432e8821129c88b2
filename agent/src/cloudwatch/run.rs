//! One configuration's shipping: the rounds, the backoff after a
//! failure, the redaction set following the secrets, the EMF documents
//! at the metrics interval, and the state published after each round.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::journal;
use super::redact::Redactor;
use super::ship::{Destination, ship_pending};
use super::sink::CloudWatchLogs;
use super::spool::{Record, Spool};
use super::{CloudWatchError, Deps, ShippingState};
use crate::config::Config;
use crate::lifetime::Lifetime;

/// Backoff after a failed shipment: doubling from the interval up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long the first round waits for instance metadata to name the host.
const IDENTITY_WAIT: Duration = Duration::from_secs(30);
/// The stream of the EMF documents (as the `{unit}` of the template).
pub const METRICS_UNIT: &str = "metrics";
/// Where the journal is first read from: the last hour, not a whole
/// uptime of history.
const FIRST_READ_SINCE: &str = "-1h";

pub async fn run(
    config: Arc<Config>,
    deps: &Deps,
    publish: &watch::Sender<ShippingState>,
    lifetime: &Lifetime,
) {
    let Some(cw) = config.cloudwatch.clone() else {
        return;
    };
    let mut state = ShippingState {
        log_group: Some(cw.log_group.as_str().to_owned()),
        max_lag: cw.max_lag.0,
        since: Some(SystemTime::now()),
        ..ShippingState::default()
    };
    let fail = |state: &mut ShippingState, e: &dyn std::error::Error| {
        let message = hostd_api::error_chain(e);
        tracing::error!("CloudWatch shipping stopped: {message}");
        state.problem = Some(message);
        publish.send_replace(state.clone());
    };
    let mut problems = Problems::default();
    let mut more = false;
    let dir = config.state_dir.join("cloudwatch");
    let mut spool = match Spool::open(&dir, cw.max_backlog_mib << 20) {
        Ok(s) => s,
        Err(e) => return fail(&mut state, &e),
    };
    state.dropped = spool.shipped().dropped;
    state.backlog_bytes = spool.backlog_bytes();
    publish.send_replace(state.clone());
    let sink = match CloudWatchLogs::from_config(&cw).await {
        Ok(s) => s,
        Err(e) => return fail(&mut state, &e),
    };
    let host = tokio::select! {
        h = host_name(deps) => h,
        () = lifetime.ending() => return,
    };
    let units = super::units(&config, &cw);
    let stream = |unit: &str| cw.stream.render(&host, unit);
    let to = Destination {
        group: cw.log_group.as_str(),
        stream: &stream,
    };
    let mut secrets = deps.secrets.clone();
    let mut redactor = redactor(&secrets);
    let mut metrics = cw.metrics.then(|| {
        let mut m = crate::metrics::emf::Collector::new(&deps.metrics);
        m.dimensions_default(
            "InstanceId",
            deps.instance.get().map(|i| i.instance_id.clone()),
        );
        m
    });
    let mut tick = tokio::time::interval(cw.interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut metrics_tick = tokio::time::interval(config.metrics.emf_interval.0);
    metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::new(cw.interval.0);
    tracing::info!(group = %cw.log_group.as_str(), %host, units = units.join(" "), "shipping to CloudWatch Logs");
    loop {
        let mut collected = Vec::new();
        tokio::select! {
            _ = tick.tick() => {}
            // A backlog left by the last pass: on with it at once.
            () = std::future::ready(()), if more => {}
            _ = metrics_tick.tick(), if metrics.is_some() => {
                if let Some(m) = &mut metrics {
                    collected = m.collect(&config.metrics).await;
                }
            }
            Ok(()) = secrets.changed() => {
                redactor = self::redactor(&secrets);
                continue;
            }
            () = lifetime.ending() => return,
        }
        let read = round(&mut spool, &units, &redactor, collected).await;
        problems.read = read.as_ref().err().map(|e| hostd_api::error_chain(e));
        if backoff.due() {
            match ship_pending(&mut spool, &sink, &to).await {
                Ok(sent) => {
                    more = sent.more;
                    backoff.reset();
                    problems.ship = None;
                    state.shipped += sent.events;
                    state.calls += sent.calls;
                    if read.is_ok() {
                        state.last_success = Some(SystemTime::now());
                    }
                }
                Err(e) => {
                    more = false;
                    backoff.failed();
                    problems.ship = Some(hostd_api::error_chain(&e));
                }
            }
        }
        state.dropped = spool.shipped().dropped;
        state.problem = problems.current();
        state.backlog_bytes = spool.backlog_bytes();
        state.oldest_unshipped_ms = oldest_waiting(&spool);
        publish.send_replace(state.clone());
    }
}

/// Reads what the journal gained (all of it, in bounded pieces) and the
/// collected EMF documents into the spool, redacted.
async fn round(
    spool: &mut Spool,
    units: &[String],
    redactor: &Redactor,
    metrics: Vec<serde_json::Value>,
) -> Result<(), CloudWatchError> {
    if !metrics.is_empty() {
        let now = now_ms();
        let records: Vec<Record> = metrics
            .iter()
            .map(|doc| Record {
                unit: METRICS_UNIT.to_owned(),
                timestamp_ms: now,
                message: doc.to_string(),
                cursor: None,
            })
            .collect();
        append(spool, &records, None)?;
    }
    loop {
        let cursor = spool.shipped().journal_cursor.clone();
        let (mut records, last) = journal::read(units, cursor.as_deref(), FIRST_READ_SINCE).await?;
        let full = records.len() >= journal::MAX_ENTRIES;
        // Only the batch's last record keeps its cursor: the spool's
        // newest one is where reading resumes after a crash.
        let n = records.len();
        for (i, r) in records.iter_mut().enumerate() {
            redactor.redact(&mut r.message);
            if i + 1 < n {
                r.cursor = None;
            }
        }
        if last != cursor {
            append(spool, &records, last.as_deref())?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// Appends to the spool and reports a gap its bound made.
fn append(
    spool: &mut Spool,
    records: &[Record],
    journal_cursor: Option<&str>,
) -> Result<(), CloudWatchError> {
    let dropped = spool.append(records, journal_cursor)?;
    report_dropped(spool, dropped)
}

/// A gap is logged, counted in the state, and marked where it is in
/// hostd's own stream, so a reader of the logs sees it too.
fn report_dropped(spool: &mut Spool, n: u64) -> Result<(), CloudWatchError> {
    if n == 0 {
        return Ok(());
    }
    let message = format!(
        "hostd: {n} journal lines were dropped before this one: the CloudWatch backlog reached cloudwatch.max_backlog_mib while CloudWatch could not be reached"
    );
    tracing::error!(dropped = n, "{message}");
    let mark = Record {
        unit: "hostd.service".to_owned(),
        timestamp_ms: now_ms(),
        message,
        cursor: None,
    };
    spool.append(std::slice::from_ref(&mark), None).map(|_| ())
}

fn oldest_waiting(spool: &Spool) -> Option<i64> {
    // Nothing waiting: no need to open the spool to find out.
    if spool.backlog_bytes() == 0 {
        return None;
    }
    let first = spool
        .read_window(&super::spool::Bounds {
            max_records: 1,
            max_bytes: 1,
            max_span_ms: 0,
            until: None,
        })
        .ok()?;
    first.records.first().map(|r| r.timestamp_ms)
}

fn redactor(secrets: &watch::Receiver<crate::secrets::SecretsState>) -> Redactor {
    let state = secrets.borrow();
    let r = Redactor::new(state.known.iter());
    if r.skipped > 0 {
        tracing::warn!(
            values = r.skipped,
            "secret values shorter than {} characters are not redacted from shipped lines",
            super::redact::SHORTEST
        );
    }
    r
}

/// The instance id once metadata gives it (waited for a while at start);
/// off EC2, or when metadata never answers, the hostname.
async fn host_name(deps: &Deps) -> String {
    let deadline = Instant::now() + IDENTITY_WAIT;
    while !deps.metadata_disabled && Instant::now() < deadline {
        if let Some(id) = deps.instance.get() {
            return id.instance_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(id) = deps.instance.get() {
        return id.instance_id.clone();
    }
    let name = deps.hostname.clone();
    tracing::warn!(host = %name, "no instance id from metadata: streams are named after the hostname");
    name
}

fn now_ms() -> i64 {
    i64::try_from(hostd_api::time::unix_ms(SystemTime::now())).unwrap_or(i64::MAX)
}

/// Why reading the journal and why shipping last failed, each logged
/// when it first appears or changes, not every round.
#[derive(Default)]
struct Problems {
    read: Option<String>,
    ship: Option<String>,
    logged: Option<String>,
}

impl Problems {
    fn current(&mut self) -> Option<String> {
        let now = self.read.clone().or_else(|| self.ship.clone());
        if now != self.logged {
            match &now {
                Some(p) => tracing::error!("CloudWatch shipping: {p}"),
                None => tracing::info!("CloudWatch shipping caught up"),
            }
            self.logged.clone_from(&now);
        }
        now
    }
}

/// Doubling waits after failures, so an outage or throttling is not met
/// with a call every round.
struct Backoff {
    base: Duration,
    wait: Duration,
    until: Option<Instant>,
}

impl Backoff {
    fn new(base: Duration) -> Self {
        Self {
            base,
            wait: base,
            until: None,
        }
    }
    fn due(&self) -> bool {
        self.until.is_none_or(|u| Instant::now() >= u)
    }
    fn failed(&mut self) {
        let jitter = crate::random_delay(self.wait / 4);
        self.until = Some(Instant::now() + self.wait + jitter);
        self.wait = (self.wait * 2).min(MAX_BACKOFF);
    }
    fn reset(&mut self) {
        self.wait = self.base;
        self.until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_double_the_wait_up_to_a_minute_and_a_success_resets_it() {
        let mut b = Backoff::new(Duration::from_secs(5));
        assert!(b.due());
        for _ in 0..10 {
            b.failed();
        }
        assert!(!b.due());
        assert_eq!(b.wait, MAX_BACKOFF);
        b.reset();
        assert!(b.due());
        assert_eq!(b.wait, Duration::from_secs(5));
    }

    #[test]
    fn a_gap_is_marked_in_hostds_stream_with_its_size() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut spool = Spool::open(dir.path(), 1 << 20)?;
        report_dropped(&mut spool, 0)?;
        assert!(
            spool
                .read_window(&super::super::ship::WINDOW)?
                .records
                .is_empty()
        );
        report_dropped(&mut spool, 1234)?;
        let w = spool.read_window(&super::super::ship::WINDOW)?;
        let marks: Vec<_> = w
            .records
            .iter()
            .map(|r| {
                (
                    r.unit.as_str(),
                    r.message.contains("1234 journal lines were dropped"),
                )
            })
            .collect();
        assert_eq!(marks, [("hostd.service", true)]);
        Ok(())
    }
}
