//! Steady HTTP load during a deploy, to prove it refused or broke no
//! request. Paced rather than bursty, so a gap in service shows as failures
//! at that moment; a fresh connection per request, so every request meets
//! the listening socket (and whatever instance is behind it) anew.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Requests in flight at once: enough that one slow request does not hold
/// up the next tick.
const WORKERS: usize = 16;
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ERRORS: usize = 20;

#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: u64,
    /// First 20 failure reasons, each with the time since start.
    pub errors: Vec<String>,
    /// Response body of GET path (trimmed) -> count, e.g. "v1" -> 900.
    pub bodies: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    errors: Vec<String>,
    bodies: BTreeMap<String, u64>,
}

struct Shared {
    addr: SocketAddr,
    path: String,
    /// Each worker keeps its connection open between requests.
    keep_alive: bool,
    started: Instant,
    /// Set by stop: workers leave the slots still queued (a hung server
    /// could have queued many) rather than send them late.
    stopping: AtomicBool,
    tally: Mutex<Tally>,
}

impl Shared {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A tally is plain counters: still right after a panic elsewhere.
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, result: Result<String>) {
        let mut t = self.tally();
        match result {
            Ok(body) => {
                t.ok += 1;
                *t.bodies.entry(body).or_default() += 1;
            }
            Err(e) => {
                t.failed += 1;
                if t.errors.len() < MAX_ERRORS {
                    let at = self.started.elapsed().as_secs_f64();
                    t.errors.push(format!("{at:.3}s: {e:#}"));
                }
            }
        }
    }
}

pub struct Load {
    shared: Arc<Shared>,
    /// Dropped to stop the pacer at once, mid-wait.
    stop_tx: Option<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `rate` requests per second of `GET path` to `addr`, spread
    /// evenly (paced, not bursts), each on a fresh TCP connection with
    /// `Connection: close`, each with a 10 s timeout, until `stop()` or
    /// `max` has elapsed (a hard bound so a forgotten Load can never run
    /// forever).
    pub fn start(addr: SocketAddr, path: &str, rate: u32, max: Duration) -> Result<Load> {
        Self::start_with(addr, path, rate, max, false)
    }

    /// The same, but each worker keeps one HTTP/1.1 connection and sends
    /// its requests on it (see [`crate::load_kept`]).
    pub fn start_kept_alive(
        addr: SocketAddr,
        path: &str,
        rate: u32,
        max: Duration,
    ) -> Result<Load> {
        Self::start_with(addr, path, rate, max, true)
    }

    fn start_with(
        addr: SocketAddr,
        path: &str,
        rate: u32,
        max: Duration,
        keep_alive: bool,
    ) -> Result<Load> {
        ensure!(rate > 0, "a load of 0 requests per second");
        ensure!(
            path.starts_with('/') && !path.contains(char::is_whitespace),
            "`{path}` is not a request path"
        );
        let shared = Arc::new(Shared {
            addr,
            path: path.to_owned(),
            keep_alive,
            started: Instant::now(),
            stopping: AtomicBool::new(false),
            tally: Mutex::new(Tally::default()),
        });
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (slot_tx, slot_rx) = mpsc::channel::<()>();
        let slot_rx = Arc::new(Mutex::new(slot_rx));
        let mut load = Load {
            shared: Arc::clone(&shared),
            stop_tx: Some(stop_tx),
            threads: Vec::with_capacity(WORKERS + 1),
        };
        // The pacer first, owning the only sender: if a spawn fails, `load`
        // drops, which stops the pacer, whose sender going ends the workers
        // that did start, and joins them all.
        let started = shared.started;
        load.threads.push(
            std::thread::Builder::new()
                .name("load-pacer".into())
                .spawn(move || pace(started, rate, max, &stop_rx, &slot_tx))?,
        );
        for i in 0..WORKERS {
            let shared = Arc::clone(&shared);
            let slots = Arc::clone(&slot_rx);
            load.threads.push(
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn(move || worker(&shared, &slots))?,
            );
        }
        Ok(load)
    }

    /// Counts so far (for polling, e.g. wait until 200 requests succeeded).
    pub fn ok_so_far(&self) -> u64 {
        self.shared.tally().ok
    }

    pub fn stop(mut self) -> Result<LoadReport> {
        let panicked = self.halt();
        ensure!(panicked == 0, "{panicked} load thread(s) panicked");
        let elapsed = self.shared.started.elapsed();
        let t = std::mem::take(&mut *self.shared.tally());
        Ok(LoadReport {
            ok: t.ok,
            failed: t.failed,
            errors: t.errors,
            bodies: t.bodies,
            elapsed,
        })
    }

    /// Stops sending and joins every thread (in-flight requests finish or
    /// time out); returns how many threads panicked.
    fn halt(&mut self) -> usize {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.stop_tx = None;
        self.threads
            .drain(..)
            .map(JoinHandle::join)
            .filter(Result::is_err)
            .count()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let panicked = self.halt();
        if panicked > 0 {
            eprintln!("warning: {panicked} load thread(s) panicked");
        }
    }
}

/// Hands out one slot per tick, on an absolute schedule so pacing does not
/// drift, until stopped or `max` has passed. Returning drops `slots`, which
/// ends the workers once the queue is empty.
fn pace(
    started: Instant,
    rate: u32,
    max: Duration,
    stop: &mpsc::Receiver<()>,
    slots: &mpsc::Sender<()>,
) {
    // None: a `max` too large for the clock, i.e. no bound.
    let end = started.checked_add(max);
    let rate = u64::from(rate);
    for tick in 0u64.. {
        let due = started
            + Duration::from_secs(tick / rate)
            + Duration::from_nanos((tick % rate) * 1_000_000_000 / rate);
        if end.is_some_and(|end| due >= end) {
            return;
        }
        match stop.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if slots.send(()).is_err() {
            return;
        }
    }
}

fn worker(shared: &Shared, slots: &Mutex<mpsc::Receiver<()>>) {
    let mut kept = crate::load_kept::Kept::default();
    loop {
        let slot = match slots.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        if slot.is_err() || shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let result = if shared.keep_alive {
            kept.get(shared.addr, &shared.path)
        } else {
            get(shared.addr, &shared.path)
        }
        .with_context(|| format!("GET {} from {}", shared.path, shared.addr));
        shared.record(result);
    }
}

/// One `GET` on a fresh connection, within [`REQUEST_TIMEOUT`] in all:
/// the trimmed body of a 200, else an error. A body shorter than its
/// Content-Length (a connection cut mid-response) is a failure too.
fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .context("timed out")
    };
    let mut s = TcpStream::connect_timeout(&addr, left()?).context("connect")?;
    s.set_write_timeout(Some(left()?))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .context("send the request")?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(left()?))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("read the response"),
        }
    }
    let (status, body) = parse(&raw)?;
    let body = String::from_utf8_lossy(&body).trim().to_owned();
    if status != 200 {
        let short: String = body.chars().take(200).collect();
        bail!("status {status}: {short}");
    }
    Ok(body)
}

/// Status and body of a whole `Connection: close` response.
fn parse(raw: &[u8]) -> Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no end of headers in {} bytes", raw.len()))?;
    let Head {
        status,
        length,
        chunked,
        ..
    } = parse_head(&String::from_utf8_lossy(&raw[..end]))?;
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        ensure!(
            body.len() >= n,
            "body cut short: {} of {n} bytes",
            body.len()
        );
        body[..n].to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// What a response's head says about its body and its connection.
pub(crate) struct Head {
    pub status: u16,
    pub length: Option<usize>,
    pub chunked: bool,
    /// `Connection: close`: the server closes after this response.
    pub close: bool,
}

/// A response head (status line and headers, without the blank line).
pub(crate) fn parse_head(head: &str) -> Result<Head> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line `{status_line}`"))?;
    let mut parsed = Head {
        status,
        length: None,
        chunked: false,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            parsed.length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            parsed.chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            parsed.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(parsed)
}

/// A chunked body, which must end with its last (empty) chunk.
pub(crate) fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunked body cut short")?;
        let size_field = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = size_field.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size `{size_hex}`"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        ensure!(rest.len() >= size + 2, "chunked body cut short");
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A server answering connections `fail` with 500 and the others with
    /// 200 "v1", until `done` is set and one more connection wakes it.
    fn server(
        fail: std::ops::Range<usize>,
        done: Arc<AtomicBool>,
    ) -> Result<(SocketAddr, JoinHandle<Result<()>>)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let thread = std::thread::spawn(move || -> Result<()> {
            for (i, conn) in listener.incoming().enumerate() {
                if done.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let mut conn = conn?;
                // Read the whole request first: closing with it unread
                // would reset the connection and lose the response.
                conn.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = conn.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                let answer: &[u8] = if fail.contains(&i) {
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv1"
                };
                conn.write_all(answer)?;
            }
            Ok(())
        });
        Ok((addr, thread))
    }

    #[test]
    fn counts_successes_failures_and_bodies() -> Result<()> {
        let done = Arc::new(AtomicBool::new(false));
        let (addr, server) = server(10..15, Arc::clone(&done))?;
        let load = Load::start(addr, "/version", 200, Duration::from_secs(60))?;
        crate::poll(
            "30 successes after the failures",
            Duration::from_secs(20),
            || Ok((load.ok_so_far() >= 30).then_some(())),
        )?;
        let asked = Instant::now();
        let report = load.stop()?;
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "stop took {:?}",
            asked.elapsed()
        );
        done.store(true, Ordering::SeqCst);
        TcpStream::connect(addr)?;
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))??;

        assert!(report.ok >= 30, "{} ok", report.ok);
        assert_eq!(report.failed, 5, "{:?}", report.errors);
        assert_eq!(report.errors.len(), 5);
        assert!(
            report.errors.iter().all(|e| e.contains("status 500: oops")),
            "{:?}",
            report.errors
        );
        assert_eq!(report.bodies.get("v1"), Some(&report.ok));
        assert_eq!(report.bodies.len(), 1);
        Ok(())
    }

    #[test]
    fn a_refused_connection_is_a_failure_with_its_reason() -> Result<()> {
        // A port that was just free: nothing listens on it.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let load = Load::start(addr, "/", 100, Duration::from_secs(60))?;
        crate::poll("a failure", Duration::from_secs(10), || {
            Ok((!load.shared.tally().errors.is_empty()).then_some(()))
        })?;
        let report = load.stop()?;
        assert!(report.failed > 0);
        // Another test of this binary may bind the freed port for a moment
        // (the kernel hands it out again): only some failures must be
        // refusals.
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.contains("connect: Connection refused")),
            "{:?}",
            report.errors
        );
        Ok(())
    }

    #[test]
    fn cut_and_chunked_responses_are_read_right() -> Result<()> {
        let (status, body) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nv2\n")?;
        assert_eq!((status, body.as_slice()), (200, b"v2\n".as_slice()));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nv2\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Le").is_err());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nv1\r\n1;x=y\r\n\n\r\n0\r\n\r\n";
        let (_, body) = parse(chunked)?;
        assert_eq!(body, b"v1\n");
        assert!(parse(&chunked[..chunked.len() - 7]).is_err());
        Ok(())
    }
}
