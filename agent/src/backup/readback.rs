//! Reading a dump back out of the repository straight into `pg_restore`'s
//! stdin: no full-size temporary file, for the drill and for restores.
//!
//! The blobs of the file are fetched [`READERS`] at a time, each on its own
//! thread (which also decrypts and decompresses it), and written in file
//! order. rustic_core's `dump` fetches two at a time (one per CPU), which
//! leaves a restore waiting on the store's latency, not its bandwidth.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pariter::IteratorExt;
use rustic_core::repofile::Node;
use rustic_core::{IndexedFullStatus, Repository};

/// How often a long copy reports its byte count.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// Blobs fetched at once. A data blob is 0.5 to 8 MiB (1 MiB on average),
/// so with [`READ_AHEAD`] the memory held is about 24 MiB, 192 MiB at worst.
const READERS: usize = 8;
/// Blobs fetched ahead of the one being written.
const READ_AHEAD: usize = 2 * READERS;

#[derive(Debug, thiserror::Error)]
pub enum ReadbackError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The command's own stderr, trimmed: pg_restore names the object.
    #[error("{program} failed: {stderr}")]
    Command { program: String, stderr: String },
    #[error("reading {file} from the repository failed: {detail}")]
    Read { file: String, detail: String },
}

/// A writer that counts and, at most every [`REPORT_EVERY`], says how far
/// it got.
pub struct Counting<W, F: FnMut(u64)> {
    inner: W,
    bytes: u64,
    last: Instant,
    report: F,
}

impl<W: Write, F: FnMut(u64)> Counting<W, F> {
    pub fn new(inner: W, report: F) -> Self {
        Self {
            inner,
            bytes: 0,
            last: Instant::now(),
            report,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<W: Write, F: FnMut(u64)> Write for Counting<W, F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        if self.last.elapsed() >= REPORT_EVERY {
            self.last = Instant::now();
            (self.report)(self.bytes);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Runs `command` with `node`'s content (the file `file` of a snapshot) on
/// its stdin. `progress` hears the bytes fed so far. The command's failure
/// is reported before a read failure: a pg_restore that stopped reading
/// makes the copy fail too, and its message is the one that explains.
pub fn into_command(
    repo: &Repository<IndexedFullStatus>,
    node: &Node,
    file: &str,
    mut command: Command,
    progress: impl FnMut(u64),
) -> Result<u64, ReadbackError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| ReadbackError::Spawn {
        program: program.clone(),
        source,
    })?;
    let copied = match child.stdin.take() {
        Some(stdin) => {
            let mut w = Counting::new(std::io::BufWriter::with_capacity(1 << 20, stdin), progress);
            let r = dump(repo, node, &mut w).and_then(|()| w.flush().map_err(|e| e.to_string()));
            r.map(|()| w.bytes())
        }
        None => Err("no stdin pipe".to_owned()),
    };
    let output = child
        .wait_with_output()
        .map_err(|source| ReadbackError::Spawn {
            program: program.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(ReadbackError::Command {
            program,
            stderr: stderr.trim().to_owned(),
        });
    }
    copied.map_err(|detail| ReadbackError::Read {
        file: file.to_owned(),
        detail,
    })
}

/// `node`'s content into `w`, [`READERS`] blobs fetched at once, in order.
pub fn dump(
    repo: &Repository<IndexedFullStatus>,
    node: &Node,
    w: &mut impl Write,
) -> Result<(), String> {
    let content = node.content.as_deref().unwrap_or_default();
    let file = Node {
        content: None,
        ..node.clone()
    };
    std::thread::scope(|scope| {
        content
            .iter()
            .parallel_map_scoped_custom(
                scope,
                |o| o.threads(READERS).buffer_size(READ_AHEAD),
                |id| {
                    // A file of this one blob: rustic_core reads it through
                    // its blob cache, checked and decompressed.
                    let one = Node {
                        content: Some(vec![*id]),
                        ..file.clone()
                    };
                    let mut blob = Vec::new();
                    repo.dump(&one, &mut blob)
                        .map(|()| blob)
                        .map_err(|e| e.display_log())
                },
            )
            .try_for_each(|blob| w.write_all(&blob?).map_err(|e| e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_counts_what_the_inner_writer_took() -> std::io::Result<()> {
        let mut reports = Vec::new();
        let mut sink = Vec::new();
        {
            let mut w = Counting::new(&mut sink, |n| reports.push(n));
            w.write_all(b"hello ")?;
            w.write_all(b"world")?;
            assert_eq!(w.bytes(), 11);
        }
        assert_eq!(sink, b"hello world");
        // Reports are rate-limited: none within the first half second.
        assert!(reports.iter().all(|&n| n <= 11));
        Ok(())
    }
}
