//! A command's standard output as one file in a snapshot (`pg_dump`
//! streamed straight into the repository: no temporary file).
//!
//! rustic's own `stdin_command` saves the snapshot before it looks at the
//! command's exit status, so a dump that died half-way would look like a
//! good backup. Here the read fails at end of stream when the command
//! exited non-zero, and the caller deletes a snapshot without its file.

use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{ErrorKind, ReadSource, ReadSourceEntry, RusticError, RusticResult};

/// The last bytes of the command's stderr kept for the error message.
const STDERR_TAIL: usize = 2048;
/// Reads from the pipe in pieces this large (a pipe gives at most what the
/// writer has put in, 64 KiB by default).
const PIPE_BUFFER: usize = 256 * 1024;

pub struct CommandSource {
    path: PathBuf,
    out: Mutex<Option<CommandOut>>,
    failure: Arc<Mutex<Option<String>>>,
}

pub struct CommandOut {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    failure: Arc<Mutex<Option<String>>>,
    what: String,
}

impl CommandSource {
    /// Starts `command`; its output becomes the file `path` (e.g.
    /// `/postgres/api.dump`). `what` names it in errors (`pg_dump of api`).
    pub fn spawn(path: &str, what: &str, mut command: Command) -> std::io::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = e.read_to_end(&mut text);
                let start = text.len().saturating_sub(STDERR_TAIL);
                String::from_utf8_lossy(&text[start..]).trim().to_owned()
            })
        });
        let failure = Arc::new(Mutex::new(None));
        Ok(Self {
            path: PathBuf::from(path),
            out: Mutex::new(Some(CommandOut {
                child,
                stdout: BufReader::with_capacity(PIPE_BUFFER, stdout),
                stderr,
                failure: Arc::clone(&failure),
                what: what.to_owned(),
            })),
            failure,
        })
    }

    /// Why the command failed, once the stream has been read to its end.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

impl CommandOut {
    fn finish(&mut self) -> std::io::Result<()> {
        let status = self.child.wait()?;
        if status.success() {
            return Ok(());
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let message = format!("{} {status}: {stderr}", self.what);
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(message.clone());
        }
        Err(std::io::Error::other(message))
    }
}

/// Fills `buf` completely unless the stream ends: rustic's chunker shrinks
/// its read buffer to the length of a short read and never grows it back,
/// so a pipe's short reads would leave it reading a few bytes at a time
/// (measured: 2.5 MB/s instead of the dump's 70).
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Read for CommandOut {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = fill(&mut self.stdout, buf)?;
        if n == 0 && !buf.is_empty() {
            self.finish()?;
        }
        Ok(n)
    }
}

impl Drop for CommandOut {
    /// A stream abandoned part-way (the upload failed) must not leave the
    /// command running or a zombie behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl ReadSource for CommandSource {
    type Open = CommandOut;
    type Iter = std::iter::Once<RusticResult<ReadSourceEntry<CommandOut>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let open = self.out.lock().ok().and_then(|mut c| c.take());
        let node = Node::new_node(self.path.as_os_str(), NodeType::File, Metadata::default());
        let entry = match open {
            Some(open) => Ok(ReadSourceEntry {
                path: self.path.clone(),
                node,
                open: Some(open),
            }),
            None => Err(RusticError::new(
                ErrorKind::Internal,
                "the command's output was read twice",
            )),
        };
        std::iter::once(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives at most 3 bytes a read, as a pipe gives what is there.
    struct Trickle(std::io::Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(3);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn short_reads_are_joined_into_full_buffers() -> std::io::Result<()> {
        let mut r = Trickle(std::io::Cursor::new((0..100u8).collect()));
        let mut buf = [0u8; 40];
        assert_eq!(fill(&mut r, &mut buf)?, 40);
        assert_eq!(buf[39], 39);
        assert_eq!(fill(&mut r, &mut buf)?, 40);
        assert_eq!(fill(&mut r, &mut buf)?, 20);
        assert_eq!(fill(&mut r, &mut buf)?, 0);
        Ok(())
    }

    #[test]
    fn a_failing_command_fails_the_read_at_the_end() -> Result<(), Box<dyn std::error::Error>> {
        let mut c = Command::new("sh");
        c.args(["-c", "printf abc; echo broken >&2; exit 3"]);
        let source = CommandSource::spawn("x.dump", "the test command", c)?;
        let mut out = source
            .out
            .lock()
            .map_err(|_| "poisoned")?
            .take()
            .ok_or("taken")?;
        let mut data = Vec::new();
        let err = out.read_to_end(&mut data).map_err(|e| e.to_string());
        assert_eq!(data, b"abc");
        assert!(matches!(&err, Err(e) if e.contains("broken")), "{err:?}");
        assert!(
            source
                .failure()
                .is_some_and(|f| f.contains("the test command"))
        );
        Ok(())
    }
}
