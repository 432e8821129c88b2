//! Sending the spool to CloudWatch, window by window, each line once.
//!
//! A window is cut so that each of its streams takes one PutLogEvents
//! call (at most 10,000 events and 1 MiB per call, at most 24 hours
//! apart, in time order). Before the calls, the window is marked in
//! flight with the last record of each stream; after each accepted call
//! its stream is struck off. A window found in flight (hostd was killed
//! mid-window, or a call timed out with its fate unknown) is resolved by
//! asking CloudWatch for each pending stream's newest event: the same as
//! the window's last record means the call got through and is not sent
//! again. So a restart neither loses nor duplicates a line.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::CloudWatchError;
use super::sink::{Event, LogSink};
use super::spool::{Bounds, InFlight, Record, Spool};

/// One call's worth: CloudWatch's limits are 10,000 events and 1 MiB
/// (messages plus 26 bytes each); we stay well below both so a window of
/// spool lines (which are longer than their messages) always fits, and
/// hostd's memory stays small (a window is in memory while it is sent).
pub const WINDOW: Bounds = Bounds {
    max_records: 500,
    max_bytes: 128 * 1024,
    max_span_ms: 23 * 3600 * 1000,
    until: None,
};

/// Between two windows of a backlog: each stream then gets at most five
/// calls a second, CloudWatch's historical per-stream rate, while a
/// backlog still drains at up to 2,500 lines a second.
const PACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Where the lines go and how streams are named.
pub struct Destination<'a> {
    pub group: &'a str,
    /// unit → stream name.
    pub stream: &'a (dyn Fn(&str) -> String + Sync),
}

/// What one pass sent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub events: u64,
    pub calls: u64,
    /// Refused by CloudWatch as too old or too new.
    pub refused: u64,
    /// Windows were left for the next pass.
    pub more: bool,
}

/// Windows sent per pass at most: a backlog is drained over passes, so the
/// shipper reads the journal, publishes its state and sees shutdown
/// between them (25 windows at the pace below is about 5 s).
pub const WINDOWS_PER_PASS: usize = 25;

/// Sends the windows waiting (up to [`WINDOWS_PER_PASS`]), stopping at the
/// first failure (the spool keeps what was not sent; the caller backs
/// off).
pub async fn ship_pending<S: LogSink>(
    spool: &mut Spool,
    sink: &S,
    to: &Destination<'_>,
) -> Result<Sent, CloudWatchError> {
    let mut sent = Sent::default();
    for pass in 0.. {
        if pass == WINDOWS_PER_PASS {
            sent.more = true;
            return Ok(sent);
        }
        if pass > 0 {
            tokio::time::sleep(PACE).await;
        }
        let (streams, mut pending) = match spool.shipped().in_flight.clone() {
            Some(f) => {
                let bounds = Bounds {
                    max_records: usize::MAX,
                    max_bytes: usize::MAX,
                    max_span_ms: i64::MAX,
                    until: Some(f.end),
                };
                let window = spool.read_window(&bounds)?;
                let mut pending = f.pending.clone();
                for (stream, last) in &f.pending {
                    let newest = sink
                        .last_event(to.group, stream)
                        .await
                        .map_err(CloudWatchError::Sink)?;
                    if newest.is_some_and(|e| &mark(e.timestamp_ms, &e.message) == last) {
                        tracing::info!(%stream, "a call cut short had got through; not sending it again");
                        pending.remove(stream);
                        spool.stream_done(stream)?;
                    }
                }
                (by_stream(window.records, to), pending)
            }
            None => {
                let window = spool.read_window(&WINDOW)?;
                if window.records.is_empty() {
                    if window.end != spool.shipped().position {
                        spool.begin(InFlight {
                            end: window.end,
                            pending: BTreeMap::new(),
                        })?;
                        spool.finish()?;
                    }
                    return Ok(sent);
                }
                let end = window.end;
                let streams = by_stream(window.records, to);
                let pending: BTreeMap<_, _> = streams
                    .iter()
                    .filter_map(|(s, events)| {
                        let last = events.last()?;
                        Some((s.clone(), mark(last.timestamp_ms, &last.message)))
                    })
                    .collect();
                spool.begin(InFlight {
                    end,
                    pending: pending.clone(),
                })?;
                (streams, pending)
            }
        };
        for (stream, events) in streams {
            if !pending.contains_key(&stream) {
                continue;
            }
            let count = events.len() as u64;
            let refused = sink
                .put(to.group, &stream, events)
                .await
                .map_err(CloudWatchError::Sink)?;
            if refused > 0 {
                tracing::warn!(%stream, refused, "CloudWatch refused events as too old or too new");
                spool.count_refused(refused);
            }
            sent.events += count;
            sent.calls += 1;
            sent.refused += refused;
            pending.remove(&stream);
            if !pending.is_empty() {
                spool.stream_done(&stream)?;
            }
        }
        spool.finish()?;
    }
    Ok(sent)
}

/// The window's records per stream, each stream's in time order (stable:
/// lines of one millisecond keep the journal's order).
fn by_stream(records: Vec<Record>, to: &Destination<'_>) -> BTreeMap<String, Vec<Event>> {
    let mut out: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for r in records {
        out.entry((to.stream)(&r.unit)).or_default().push(Event {
            timestamp_ms: r.timestamp_ms,
            message: r.message,
        });
    }
    for events in out.values_mut() {
        events.sort_by_key(|e| e.timestamp_ms);
    }
    out
}

/// What identifies a stream's last event: its time and a digest of its
/// text (the spool's state file holds no line).
fn mark(timestamp_ms: i64, message: &str) -> (i64, String) {
    let digest = Sha256::digest(message.as_bytes());
    (timestamp_ms, hostd_api::deploy::hex(&digest[..16]))
}
