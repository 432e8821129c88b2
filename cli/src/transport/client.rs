//! HTTP/1.1 to hostd over a child process's stdin/stdout.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::lines::JsonLines;
use super::{SSH_FAILURE, TransportError, summarize_stderr};

/// hostd answers are small JSON documents; anything larger is a bug or an
/// attack, not something to buffer.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// How long a failed exchange waits for the child to exit and explain why.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// ssh's stderr kept for error messages (the tail matters, not the head).
const MAX_STDERR: usize = 64 * 1024;

/// A request body: in one piece, or an upload streamed from a file.
pub type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

fn json_body(body: Option<Bytes>) -> RequestBody {
    Full::new(body.unwrap_or_default())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// One HTTP/1.1 connection to hostd's control API, carried by a child
/// process (normally `ssh HOST hostd dial-stdio`).
pub struct HostClient {
    host: String,
    remote: String,
    sender: http1::SendRequest<RequestBody>,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_task: JoinHandle<()>,
    conn_task: JoinHandle<()>,
}

impl HostClient {
    /// Spawns `command` and speaks HTTP over its stdin/stdout. `host` names
    /// the host in errors; `remote` is the command line shown when the remote
    /// side fails.
    pub async fn spawn(
        host: &str,
        remote: &str,
        mut command: Command,
    ) -> Result<Self, TransportError> {
        let program = command.as_std().get_program().to_owned();
        let spawn_err = |source| TransportError::Spawn {
            host: host.to_owned(),
            program: program.clone(),
            source,
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        tracing::debug!(host, command = ?command.as_std(), "spawning transport");
        let mut child = command.spawn().map_err(spawn_err)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_err(std::io::Error::other("child has no piped stdio")));
        };

        let buffer = Arc::new(Mutex::new(Vec::new()));
        let stderr_task =
            tokio::spawn(collect_stderr(host.to_owned(), stderr, Arc::clone(&buffer)));

        let io = TokioIo::new(tokio::io::join(stdout, stdin));
        let (sender, conn) = match http1::handshake(io).await {
            Ok(pair) => pair,
            Err(source) => {
                return Err(TransportError::Protocol {
                    host: host.to_owned(),
                    stderr: String::new(),
                    source,
                });
            }
        };
        let conn_host = host.to_owned();
        let conn_task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(host = conn_host, error = %e, "connection ended with an error");
            }
        });
        Ok(Self {
            host: host.to_owned(),
            remote: remote.to_owned(),
            sender,
            child,
            stderr: buffer,
            stderr_task,
            conn_task,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET path`, decoding a 2xx JSON body as `T`.
    pub async fn get_json<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, TransportError> {
        let body = self.request(Method::GET, path, None).await?;
        serde_json::from_slice(&body).map_err(|source| TransportError::Decode {
            host: self.host.clone(),
            path: path.to_owned(),
            source,
        })
    }

    /// `POST path` with a binary body, decoding a 2xx JSON answer as `T`.
    pub async fn post_octets<T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: Bytes,
    ) -> Result<T, TransportError> {
        let octets = Some("application/octet-stream");
        let answer = self
            .exchange(Method::POST, path, json_body(Some(body)), octets)
            .await?;
        serde_json::from_slice(&answer).map_err(|source| TransportError::Decode {
            host: self.host.clone(),
            path: path.to_owned(),
            source,
        })
    }

    /// Sends one request; a non-2xx answer becomes [`TransportError::Api`]
    /// carrying hostd's `ErrorBody` message. `body` is sent as JSON.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, TransportError> {
        let content_type = body.as_ref().map(|_| "application/json");
        self.exchange(method, path, json_body(body), content_type)
            .await
    }

    /// `PUT path` with `body` streamed as it is produced (an artifact
    /// upload), answered like [`Self::request`].
    pub async fn upload(
        &mut self,
        path: &str,
        body: RequestBody,
        content_type: &str,
    ) -> Result<Bytes, TransportError> {
        self.exchange(Method::PUT, path, body, Some(content_type))
            .await
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: RequestBody,
        content_type: Option<&str>,
    ) -> Result<Bytes, TransportError> {
        let response = self.send(method, path, body, content_type).await?;
        let status = response.status();
        let bytes = self.collect(path, status, response.into_body()).await?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(self.api_error(path, status, &bytes))
        }
    }

    /// Like [`Self::request`], but a 2xx body is read as it arrives, one
    /// JSON document of type `T` per line, for answers that report a long
    /// operation as it goes.
    pub async fn stream<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<JsonLines<'_, T>, TransportError> {
        let content_type = body.as_ref().map(|_| "application/json");
        let response = self
            .send(method, path, json_body(body), content_type)
            .await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = self.collect(path, status, response.into_body()).await?;
            return Err(self.api_error(path, status, &bytes));
        }
        Ok(JsonLines::new(self, path, response.into_body()))
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: RequestBody,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>, TransportError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            // HTTP/1.1 requires Host; hostd does not route on it.
            .header(header::HOST, "hostd")
            .header(
                header::USER_AGENT,
                concat!("hostctl/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = content_type {
            builder = builder.header(header::CONTENT_TYPE, t);
        }
        let request = match builder.body(body) {
            Ok(r) => r,
            Err(source) => {
                return Err(TransportError::InvalidRequest {
                    host: self.host.clone(),
                    path: path.to_owned(),
                    source,
                });
            }
        };

        let sent = match self.sender.ready().await {
            Ok(()) => self.sender.send_request(request).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(r) => Ok(r),
            Err(e) => Err(self.explain(e).await),
        }
    }

    async fn collect(
        &self,
        path: &str,
        status: StatusCode,
        body: Incoming,
    ) -> Result<Bytes, TransportError> {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) => Err(TransportError::Api {
                host: self.host.clone(),
                path: path.to_owned(),
                status: status.as_u16(),
                message: format!("cannot read the response body: {e}"),
            }),
        }
    }

    fn api_error(&self, path: &str, status: StatusCode, body: &[u8]) -> TransportError {
        let message = match serde_json::from_slice::<hostd_api::ErrorBody>(body) {
            Ok(b) => b.error,
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no details").to_owned()
                } else {
                    text.chars().take(300).collect()
                }
            }
        };
        TransportError::Api {
            host: self.host.clone(),
            path: path.to_owned(),
            status: status.as_u16(),
            message,
        }
    }

    /// A broken exchange is almost always the child dying (ssh could not
    /// connect, hostd is missing...): wait briefly for it and report what
    /// it printed rather than hyper's "connection closed".
    async fn explain(&mut self, source: hyper::Error) -> TransportError {
        let exit = self.child_exit().await;
        let stderr = self.stderr_text();
        let host = self.host.clone();
        match exit {
            Some(Ok(status)) if status.code() == Some(SSH_FAILURE) => {
                TransportError::Unreachable { host, stderr }
            }
            Some(Ok(status)) => TransportError::Remote {
                host,
                command: self.remote.clone(),
                exit: status.code(),
                stderr,
            },
            Some(Err(_)) | None => TransportError::Protocol {
                host,
                stderr,
                source,
            },
        }
    }

    /// The answer broke off after it had begun: the request was accepted,
    /// so hostd may well be carrying it out still. ssh's last words (a
    /// ServerAlive timeout, say) tell the operator why.
    pub(super) async fn dropped(&mut self, path: &str, source: hyper::Error) -> TransportError {
        let _ = self.child_exit().await;
        TransportError::Dropped {
            host: self.host.clone(),
            path: path.to_owned(),
            stderr: self.stderr_text(),
            source,
        }
    }

    /// The child's exit, if it comes within [`EXIT_GRACE`], with its stderr
    /// read to the end.
    async fn child_exit(&mut self) -> Option<std::io::Result<ExitStatus>> {
        let exit = tokio::time::timeout(EXIT_GRACE, self.child.wait())
            .await
            .ok()?;
        // The child is gone, so stderr reaches EOF promptly.
        let _ = tokio::time::timeout(EXIT_GRACE, &mut self.stderr_task).await;
        Some(exit)
    }

    fn stderr_text(&self) -> String {
        let buffer = self
            .stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        summarize_stderr(&buffer)
    }

    /// Ends the exchange cleanly: closing stdin lets `dial-stdio` and ssh
    /// exit on their own; whatever lingers is killed.
    pub async fn close(mut self) {
        drop(self.sender);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.conn_task).await;
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        self.conn_task.abort();
        self.stderr_task.abort();
    }
}

pub(super) async fn collect_stderr(
    host: String,
    stderr: tokio::process::ChildStderr,
    buffer: Arc<Mutex<Vec<u8>>>,
) {
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                tracing::debug!(host, "ssh: {}", String::from_utf8_lossy(&line).trim_end());
                let mut buf = buffer
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                buf.extend_from_slice(&line);
                if buf.len() > MAX_STDERR {
                    let excess = buf.len() - MAX_STDERR;
                    buf.drain(..excess);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
