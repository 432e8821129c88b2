use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hostd_api::HealthStatus;

use super::sink::{Event, LogSink, SinkError};
use super::spool::{Bounds, Record, Spool};
use super::*;

type Res = Result<(), Box<dyn std::error::Error>>;

fn rec(unit: &str, t: i64, m: &str) -> Record {
    Record {
        unit: unit.into(),
        timestamp_ms: t,
        message: m.into(),
        cursor: None,
    }
}

/// Keeps what it accepted; fails the calls it is told to, before or
/// after taking the events (a timeout whose call got through).
#[derive(Default)]
struct FakeSink {
    streams: Mutex<BTreeMap<String, Vec<Event>>>,
    calls: Mutex<u32>,
    /// Stream → (accept anyway, times left).
    fail: Mutex<BTreeMap<String, (bool, u32)>>,
}

impl FakeSink {
    fn fail(&self, stream: &str, accept: bool, times: u32) {
        if let Ok(mut f) = self.fail.lock() {
            f.insert(stream.into(), (accept, times));
        }
    }
    fn messages(&self, stream: &str) -> Vec<String> {
        self.streams
            .lock()
            .map(|s| {
                s.get(stream)
                    .map(|e| e.iter().map(|e| e.message.clone()).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

impl LogSink for FakeSink {
    async fn put(&self, _group: &str, stream: &str, events: Vec<Event>) -> Result<u64, SinkError> {
        if let Ok(mut c) = self.calls.lock() {
            *c += 1;
        }
        let failing = self.fail.lock().ok().and_then(|mut f| {
            let (accept, left) = f.get_mut(stream)?;
            (*left > 0).then(|| {
                *left -= 1;
                *accept
            })
        });
        let unreachable = SinkError::Unreachable {
            detail: "cut".into(),
        };
        if failing == Some(false) {
            return Err(unreachable);
        }
        if let Ok(mut s) = self.streams.lock() {
            s.entry(stream.into())
                .or_default()
                .extend(events.iter().cloned());
        }
        if failing == Some(true) {
            return Err(unreachable);
        }
        Ok(0)
    }

    async fn last_event(&self, _group: &str, stream: &str) -> Result<Option<Event>, SinkError> {
        Ok(self
            .streams
            .lock()
            .ok()
            .and_then(|s| s.get(stream)?.last().cloned()))
    }
}

fn stream_of(unit: &str) -> String {
    format!("i-1/{unit}")
}

fn to() -> Destination<'static> {
    Destination {
        group: "/hostd/test",
        stream: &stream_of,
    }
}

#[tokio::test]
async fn each_stream_gets_its_lines_in_time_order_once() -> Res {
    let dir = tempfile::tempdir()?;
    let mut spool = Spool::open(dir.path(), 1 << 20)?;
    spool.append(
        &[
            rec("api@1.service", 20, "b"),
            rec("hostd.service", 15, "h"),
            rec("api@1.service", 10, "a"),
            rec("api@1.service", 20, "c"),
        ],
        Some("cursor-1"),
    )?;
    let sink = FakeSink::default();
    let sent = ship_pending(&mut spool, &sink, &to()).await?;
    assert_eq!((sent.events, sent.calls), (4, 2));
    assert_eq!(sink.messages("i-1/api@1.service"), ["a", "b", "c"]);
    assert_eq!(sink.messages("i-1/hostd.service"), ["h"]);
    let again = ship_pending(&mut spool, &sink, &to()).await?;
    assert_eq!(again, Sent::default());
    assert_eq!(spool.backlog_bytes(), 0);
    assert_eq!(spool.shipped().journal_cursor.as_deref(), Some("cursor-1"));
    Ok(())
}

#[tokio::test]
async fn a_window_cut_short_is_finished_after_a_restart_without_loss_or_duplicates() -> Res {
    let dir = tempfile::tempdir()?;
    let sink = FakeSink::default();
    {
        let mut spool = Spool::open(dir.path(), 1 << 20)?;
        spool.append(
            &[
                rec("a.service", 1, "a1"),
                rec("b.service", 2, "b1"),
                rec("c.service", 3, "c1"),
            ],
            None,
        )?;
        // a: accepted. b: the call got through but its answer was lost,
        // so c (after it) was never sent.
        sink.fail("i-1/b.service", true, 1);
        assert!(ship_pending(&mut spool, &sink, &to()).await.is_err());
        assert!(spool.shipped().in_flight.is_some());
        // hostd dies here; its spool and state are on disk.
    }
    let mut spool = Spool::open(dir.path(), 1 << 20)?;
    assert!(spool.shipped().in_flight.is_some());
    spool.append(&[rec("a.service", 4, "a2")], None)?;
    ship_pending(&mut spool, &sink, &to()).await?;
    assert_eq!(sink.messages("i-1/a.service"), ["a1", "a2"]);
    assert_eq!(sink.messages("i-1/b.service"), ["b1"]);
    assert_eq!(sink.messages("i-1/c.service"), ["c1"]);
    Ok(())
}

#[tokio::test]
async fn an_outage_keeps_everything_until_it_ends() -> Res {
    let dir = tempfile::tempdir()?;
    let mut spool = Spool::open(dir.path(), 1 << 20)?;
    let sink = FakeSink::default();
    sink.fail("i-1/x.service", false, 3);
    for round in 0..3 {
        spool.append(&[rec("x.service", round, &format!("line {round}"))], None)?;
        assert!(ship_pending(&mut spool, &sink, &to()).await.is_err());
        assert!(spool.backlog_bytes() > 0);
    }
    ship_pending(&mut spool, &sink, &to()).await?;
    assert_eq!(
        sink.messages("i-1/x.service"),
        ["line 0", "line 1", "line 2"]
    );
    Ok(())
}

#[test]
fn the_bound_drops_whole_oldest_segments_and_counts_their_lines() -> Res {
    let dir = tempfile::tempdir()?;
    // 64 KiB bound: 8 KiB segments.
    let mut spool = Spool::open(dir.path(), 64 * 1024)?;
    let line = "x".repeat(200);
    let mut dropped = 0;
    for i in 0..2000 {
        dropped += spool.append(&[rec("x.service", i, &line)], None)?;
    }
    assert!(dropped > 1000, "dropped {dropped}");
    assert_eq!(spool.shipped().dropped, dropped);
    assert!(
        spool.backlog_bytes() <= 64 * 1024,
        "{}",
        spool.backlog_bytes()
    );
    let window = spool.read_window(&ship::WINDOW)?;
    let first = window.records.first().map(|r| r.timestamp_ms);
    // What is left is the newest lines, from the first one kept on.
    assert_eq!(first, Some(i64::try_from(dropped)?));
    let on_disk = std::fs::read_dir(dir.path())?.count();
    assert!(on_disk <= 10, "{on_disk} files");
    Ok(())
}

#[test]
fn a_torn_last_line_is_cut_and_windows_keep_to_their_bounds() -> Res {
    let dir = tempfile::tempdir()?;
    let mut spool = Spool::open(dir.path(), 1 << 20)?;
    spool.append(&[rec("x.service", 0, "a"), rec("x.service", 1, "b")], None)?;
    drop(spool);
    let segment = dir.path().join("0000000001.jsonl");
    let mut text = std::fs::read_to_string(&segment)?;
    text.push_str("{\"u\":\"x.service\",\"t\":2,\"m\":\"to");
    std::fs::write(&segment, text)?;
    let mut spool = Spool::open(dir.path(), 1 << 20)?;
    spool.append(&[rec("x.service", 3, "c")], None)?;
    let all = spool.read_window(&ship::WINDOW)?;
    let texts: Vec<_> = all.records.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(texts, ["a", "b", "c"]);
    let two = Bounds {
        max_records: 2,
        ..ship::WINDOW
    };
    assert_eq!(spool.read_window(&two)?.records.len(), 2);
    let day = Bounds {
        max_span_ms: 1,
        ..ship::WINDOW
    };
    // a (0) and b (1) are 1 ms apart; c (3) would make 3.
    assert_eq!(spool.read_window(&day)?.records.len(), 2);
    Ok(())
}

#[test]
fn lag_degrades_health_past_the_bound_and_names_the_problem() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut s = ShippingState {
        log_group: Some("/hostd/test".into()),
        max_lag: Duration::from_secs(60),
        since: Some(now - Duration::from_secs(600)),
        last_success: Some(now - Duration::from_secs(10)),
        ..ShippingState::default()
    };
    let c = s.component(now);
    assert_eq!(c.map(|c| c.status), Some(HealthStatus::Healthy));
    // A line waiting 2 minutes while calls fail.
    s.oldest_unshipped_ms = Some(1_000_000_000 - 120_000);
    s.problem = Some("cannot reach CloudWatch Logs: connection refused".into());
    assert_eq!(s.lag(now), Duration::from_secs(120));
    let c = s.component(now);
    assert_eq!(c.as_ref().map(|c| c.status), Some(HealthStatus::Degraded));
    let reason = c.and_then(|c| c.reason).unwrap_or_default();
    assert!(reason.contains("2m behind"), "{reason}");
    assert!(reason.contains("connection refused"), "{reason}");
    // Failing rounds with nothing waiting: behind since the last success.
    s.oldest_unshipped_ms = None;
    s.last_success = Some(now - Duration::from_secs(300));
    assert_eq!(s.lag(now), Duration::from_secs(300));
    assert_eq!(
        s.status(now).map(|st| (st.lag_seconds, st.max_lag_seconds)),
        Some((300, 60))
    );
    assert!(ShippingState::default().component(now).is_none());
}

#[test]
fn reading_resumes_after_the_newest_cursor_in_the_spool_even_if_its_save_was_lost() -> Res {
    let dir = tempfile::tempdir()?;
    let mut spool = Spool::open(dir.path(), 1 << 20)?;
    spool.append(&[rec("x.service", 1, "a")], Some("c1"))?;
    let mut last = rec("x.service", 2, "b");
    last.cursor = Some("c2".into());
    // Appended, then killed before the cursor was saved.
    spool.append(&[rec("x.service", 2, "a2"), last], None)?;
    drop(spool);
    let spool = Spool::open(dir.path(), 1 << 20)?;
    assert_eq!(spool.shipped().journal_cursor.as_deref(), Some("c2"));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_backlog_is_drained_over_passes_leaving_the_shipper_free_between() -> Res {
    let dir = tempfile::tempdir()?;
    let mut spool = Spool::open(dir.path(), 4 << 20)?;
    let per_window = ship::WINDOW.max_records;
    let total = per_window * (ship::WINDOWS_PER_PASS + 1);
    let records: Vec<_> = (0..total)
        .map(|i| rec("x.service", i64::try_from(i).unwrap_or(0), &format!("{i}")))
        .collect();
    spool.append(&records, None)?;
    let sink = FakeSink::default();
    let first = ship_pending(&mut spool, &sink, &to()).await?;
    assert!(first.more);
    assert_eq!(
        first.events,
        u64::try_from(per_window * ship::WINDOWS_PER_PASS)?
    );
    let second = ship_pending(&mut spool, &sink, &to()).await?;
    assert!(!second.more);
    assert_eq!(second.events, u64::try_from(per_window)?);
    let got = sink.messages("i-1/x.service");
    assert_eq!(got.len(), total);
    assert!(got.iter().enumerate().all(|(i, m)| *m == i.to_string()));
    Ok(())
}
