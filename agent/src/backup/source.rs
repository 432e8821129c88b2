//! A command's standard output as one file in a snapshot (`pg_dump`
//! streamed straight into the repository: no temporary file).
//!
//! rustic's own `stdin_command` saves the snapshot before it looks at the
//! command's exit status, so a dump that died half-way would look like a
//! good backup. Here the read fails at end of stream when the command
//! exited non-zero, and the caller deletes a snapshot without its file.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{ErrorKind, ReadSource, ReadSourceEntry, RusticError, RusticResult};

/// The last bytes of the command's stderr kept for the error message.
const STDERR_TAIL: usize = 2048;

pub struct CommandSource {
    path: PathBuf,
    out: Mutex<Option<CommandOut>>,
    failure: Arc<Mutex<Option<String>>>,
}

pub struct CommandOut {
    child: Child,
    stdout: ChildStdout,
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
                stdout,
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

impl Read for CommandOut {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stdout.read(buf)?;
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
