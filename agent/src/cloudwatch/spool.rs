//! The backlog on disk: records waiting for CloudWatch, appended to
//! numbered segment files and read back in order from the shipped
//! position. It is what lets an outage, a restart of hostd or a reboot
//! lose nothing, and its bound is what an outage longer than the disk
//! allows costs: whole oldest segments dropped, their unshipped records
//! counted.
//!
//! One task owns the spool (the shipper), so there is no locking. A
//! record is one JSON line; a torn last line left by a crash is cut off
//! when the spool is opened.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CloudWatchError;
use crate::state_file::JsonFile;

/// One line for CloudWatch: its stream (the unit, or `metrics`), its time
/// and text, and for a journal entry the entry's cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "u")]
    pub unit: String,
    #[serde(rename = "t")]
    pub timestamp_ms: i64,
    #[serde(rename = "m")]
    pub message: String,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A place in the spool: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// What has left the host, persisted after every call to CloudWatch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipped {
    /// Everything before this has been accepted by CloudWatch.
    pub position: Position,
    /// A window being sent when hostd stopped: which of its streams were
    /// already accepted, and for the others the last record sent, to ask
    /// CloudWatch whether the call got through.
    #[serde(default)]
    pub in_flight: Option<InFlight>,
    /// Records dropped since the spool was created (bound reached, or
    /// refused by CloudWatch as too old or too new).
    #[serde(default)]
    pub dropped: u64,
    /// The newest journal cursor read into the spool.
    #[serde(default)]
    pub journal_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub end: Position,
    /// stream → its last record in the window: (timestamp, message digest).
    pub pending: std::collections::BTreeMap<String, (i64, String)>,
}

/// How much one window may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_records: usize,
    /// Of spool lines: the messages in them are fewer bytes.
    pub max_bytes: usize,
    /// Between its oldest and newest record.
    pub max_span_ms: i64,
    /// Not past here (the window in flight, read again).
    pub until: Option<Position>,
}

/// A run of records from the shipped position, and where it ends.
#[derive(Debug, Default)]
pub struct Window {
    pub records: Vec<Record>,
    pub end: Position,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Segment numbers on disk, oldest first; the last is written to.
    segments: Vec<u64>,
    active_len: u64,
    /// Bytes of every segment but the active one.
    sealed_bytes: u64,
    shipped: Shipped,
    state: JsonFile<Shipped>,
}

const SUFFIX: &str = ".jsonl";

impl Spool {
    /// Opens (or creates, 0700) the spool in `dir`, cutting a torn last
    /// line. `max_bytes` bounds the segments together.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, CloudWatchError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| CloudWatchError::Spool {
                action,
                path,
                source,
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create", dir))?;
        let mut segments = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io("list", dir))? {
            let name = e.map_err(io("list", dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(SUFFIX).and_then(|n| n.parse().ok()) {
                segments.push(n);
            }
        }
        segments.sort_unstable();
        if segments.is_empty() {
            segments.push(1);
        }
        let state: JsonFile<Shipped> =
            JsonFile::new(dir.join("shipped.json"), "CloudWatch shipping state");
        let mut shipped = state.load_or_log().unwrap_or_default();
        let first = segments.first().copied().unwrap_or(1);
        if shipped.position.segment < first {
            shipped.position = Position {
                segment: first,
                offset: 0,
            };
            shipped.in_flight = None;
        }
        let mut spool = Self {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(4096, 1 << 20),
            segments,
            active_len: 0,
            sealed_bytes: 0,
            shipped,
            state,
        };
        let active = spool.path(spool.active());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&active)
            .map_err(io("open", &active))?;
        let (kept, cursor) = cut_torn_line(&file, &active)?;
        spool.active_len = kept;
        // The journal cursor is saved after its records are appended: a
        // crash between the two leaves the newer one in the spool. (The
        // state's may be newer only by entries that made no record, which
        // are read again harmlessly.)
        if cursor.is_some() {
            spool.shipped.journal_cursor = cursor;
        }
        let sealed = &spool.segments[..spool.segments.len() - 1];
        for n in sealed {
            let p = spool.path(*n);
            spool.sealed_bytes += std::fs::metadata(&p).map_err(io("read", &p))?.len();
        }
        Ok(spool)
    }

    pub fn shipped(&self) -> &Shipped {
        &self.shipped
    }

    /// Bytes waiting (approximately: whole segments before the position
    /// are already gone).
    pub fn backlog_bytes(&self) -> u64 {
        (self.sealed_bytes + self.active_len).saturating_sub(self.shipped.position.offset)
    }

    fn active(&self) -> u64 {
        self.segments.last().copied().unwrap_or(1)
    }

    fn path(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("{segment:010}{SUFFIX}"))
    }

    /// Appends `records` (one write per segment), then drops the oldest
    /// segments while the spool is over its bound. Returns how many
    /// unshipped records were dropped.
    pub fn append(
        &mut self,
        records: &[Record],
        journal_cursor: Option<&str>,
    ) -> Result<u64, CloudWatchError> {
        let mut buf = Vec::new();
        let mut rotated = false;
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(CloudWatchError::Encode)?;
            buf.push(b'\n');
            if self.active_len + buf.len() as u64 >= self.segment_bytes {
                self.write_active(&buf)?;
                buf.clear();
                self.sealed_bytes += self.active_len;
                self.segments.push(self.active() + 1);
                self.active_len = 0;
                rotated = true;
            }
        }
        self.write_active(&buf)?;
        let dropped = self.enforce_bound()?;
        if let Some(c) = journal_cursor {
            self.shipped.journal_cursor = Some(c.to_owned());
        }
        // The cursor rides on the batch's last record, in the active
        // segment, where opening finds it: the state needs saving only
        // when that is no longer where the newest cursor would be looked
        // for (a new segment) or when lines were dropped.
        if dropped > 0 || rotated {
            self.save()?;
        }
        Ok(dropped)
    }

    fn write_active(&mut self, buf: &[u8]) -> Result<(), CloudWatchError> {
        let path = self.path(self.active());
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| CloudWatchError::Spool {
                action: "open",
                path: path.clone(),
                source,
            })?;
        f.write_all(buf).map_err(|source| CloudWatchError::Spool {
            action: "append to",
            path,
            source,
        })?;
        self.active_len += buf.len() as u64;
        Ok(())
    }

    fn enforce_bound(&mut self) -> Result<u64, CloudWatchError> {
        let mut dropped = 0;
        while self.sealed_bytes + self.active_len > self.max_bytes && self.segments.len() > 1 {
            let oldest = self.segments.remove(0);
            let path = self.path(oldest);
            if self.shipped.position.segment <= oldest {
                let from = if self.shipped.position.segment == oldest {
                    self.shipped.position.offset
                } else {
                    0
                };
                dropped += count_records(&path, from)?;
                let next = self.segments.first().copied().unwrap_or(oldest + 1);
                self.shipped.position = Position {
                    segment: next,
                    offset: 0,
                };
                self.shipped.in_flight = None;
            }
            self.sealed_bytes = self
                .sealed_bytes
                .saturating_sub(std::fs::metadata(&path).map_or(0, |m| m.len()));
            remove(&path)?;
        }
        self.shipped.dropped += dropped;
        Ok(dropped)
    }

    /// Records from the shipped position, in the order written, and where
    /// they end: at least one when any is waiting, then up to the limits
    /// of `bounds`.
    pub fn read_window(&self, bounds: &Bounds) -> Result<Window, CloudWatchError> {
        let mut window = Window {
            records: Vec::new(),
            end: self.shipped.position,
        };
        let (mut bytes, mut first_ms, mut last_ms) = (0, i64::MAX, i64::MIN);
        let start = self.shipped.position;
        for &segment in self.segments.iter().filter(|s| **s >= start.segment) {
            let offset = if segment == start.segment {
                start.offset
            } else {
                0
            };
            let path = self.path(segment);
            let io = |source| CloudWatchError::Spool {
                action: "read",
                path: path.clone(),
                source,
            };
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let mut reader = BufReader::new(file);
            reader.seek(SeekFrom::Start(offset)).map_err(io)?;
            let mut at = offset;
            let mut line = String::new();
            loop {
                if bounds.until.is_some_and(|u| window.end >= u) {
                    return Ok(window);
                }
                line.clear();
                let n = reader.read_line(&mut line).map_err(io)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                let record = serde_json::from_str::<Record>(&line);
                if let Ok(r) = &record {
                    let (lo, hi) = (first_ms.min(r.timestamp_ms), last_ms.max(r.timestamp_ms));
                    let full = window.records.len() >= bounds.max_records
                        || bytes + n > bounds.max_bytes
                        || hi.saturating_sub(lo) > bounds.max_span_ms;
                    if !window.records.is_empty() && full {
                        return Ok(window);
                    }
                    (first_ms, last_ms) = (lo, hi);
                }
                at += n as u64;
                bytes += n;
                window.end = Position {
                    segment,
                    offset: at,
                };
                match record {
                    Ok(r) => window.records.push(r),
                    // A line that does not parse is skipped, never resent
                    // forever.
                    Err(e) => tracing::warn!("skipping an unreadable spool record: {e}"),
                }
            }
            if segment != self.active() {
                window.end = Position {
                    segment: segment + 1,
                    offset: 0,
                };
            }
        }
        Ok(window)
    }

    /// Marks a window's streams in flight before they are sent.
    pub fn begin(&mut self, in_flight: InFlight) -> Result<(), CloudWatchError> {
        self.shipped.in_flight = Some(in_flight);
        self.save()
    }

    /// One stream of the window in flight was accepted (the last one is
    /// settled by [`Spool::finish`]).
    pub fn stream_done(&mut self, stream: &str) -> Result<(), CloudWatchError> {
        if let Some(f) = &mut self.shipped.in_flight {
            f.pending.remove(stream);
        }
        self.save()
    }

    /// Records CloudWatch refused for good (too old, too new).
    pub fn count_refused(&mut self, n: u64) {
        self.shipped.dropped += n;
    }

    /// The window in flight is all accepted: move past it and delete the
    /// segments left behind.
    pub fn finish(&mut self) -> Result<(), CloudWatchError> {
        if let Some(f) = self.shipped.in_flight.take() {
            self.shipped.position = f.end;
        }
        self.save()?;
        while self.segments.len() > 1 && self.segments[0] < self.shipped.position.segment {
            let oldest = self.segments.remove(0);
            let path = self.path(oldest);
            self.sealed_bytes = self
                .sealed_bytes
                .saturating_sub(std::fs::metadata(&path).map_or(0, |m| m.len()));
            remove(&path)?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), CloudWatchError> {
        self.state
            .save(&self.shipped)
            .map_err(CloudWatchError::State)
    }
}

fn remove(path: &Path) -> Result<(), CloudWatchError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CloudWatchError::Spool {
            action: "remove",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Complete lines from `offset` on.
fn count_records(path: &Path, offset: u64) -> Result<u64, CloudWatchError> {
    let err = |source| CloudWatchError::Spool {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let Ok(mut file) = File::open(path) else {
        return Ok(0);
    };
    file.seek(SeekFrom::Start(offset)).map_err(err)?;
    let mut n = 0;
    for line in BufReader::new(file).split(b'\n') {
        line.map_err(err)?;
        n += 1;
    }
    Ok(n)
}

/// Truncates `file` after its last newline; returns the length kept and
/// the cursor of its last record that has one.
fn cut_torn_line(file: &File, path: &Path) -> Result<(u64, Option<String>), CloudWatchError> {
    let err = |source| CloudWatchError::Spool {
        action: "repair",
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read(path).map_err(err)?;
    let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if keep < text.len() {
        tracing::warn!(path = %path.display(), "cutting a torn last record from the spool");
        file.set_len(keep as u64).map_err(err)?;
    }
    let cursor = text[..keep]
        .split(|b| *b == b'\n')
        .rev()
        .filter_map(|l| serde_json::from_slice::<Record>(l).ok())
        .find_map(|r| r.cursor);
    Ok((keep as u64, cursor))
}
