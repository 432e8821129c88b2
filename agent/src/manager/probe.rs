//! An instance's own health check as a gate: `GET path` over HTTP on its
//! Unix socket (instances sharing one public listening socket) or on its
//! port on loopback (an app listening on `$PORT`).
//! Unlike /health's instance check, a refusal carries the app's own
//! reason (the first line of its answer): that is what a failed deploy
//! shows the operator.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_body_util::Empty;
use hyper::Request;
use hyper::body::Bytes;

use crate::checks::InstanceAddress;

/// Between two looks while waiting for a unit or an instance. A look is a
/// D-Bus property read and a request on a local socket (microseconds), and
/// a deploy waits for each instance in turn: a short interval is time saved
/// on every restart.
pub const POLL: Duration = Duration::from_millis(50);

/// One answer must come within this; a hung instance is not healthy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum GateRefusal {
    #[error("cannot connect to {socket}")]
    Connect {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP handshake on {socket}")]
    Handshake {
        socket: String,
        #[source]
        source: hyper::Error,
    },
    #[error("bad health path {path}")]
    BadPath {
        path: String,
        #[source]
        source: hyper::http::Error,
    },
    #[error("GET {path} on {socket}")]
    Request {
        path: String,
        socket: String,
        #[source]
        source: hyper::Error,
    },
    #[error("GET {path} answered {status}{}", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Status {
        path: String,
        status: hyper::StatusCode,
        /// The first line of the app's answer, short.
        reason: String,
    },
    #[error("GET {path} on {socket}: no answer within {}s", .after.as_secs())]
    Timeout {
        path: String,
        socket: String,
        after: Duration,
    },
}

/// Asks one instance whether it is up.
pub trait HealthGate: Send + Sync {
    fn ask<'a>(
        &'a self,
        socket: &'a InstanceAddress,
        path: &'a str,
    ) -> BoxFuture<'a, Result<(), GateRefusal>>;
}

/// The real gate: HTTP/1.1 on the instance's health socket.
pub struct HttpGate;

impl HealthGate for HttpGate {
    fn ask<'a>(
        &'a self,
        socket: &'a InstanceAddress,
        path: &'a str,
    ) -> BoxFuture<'a, Result<(), GateRefusal>> {
        async move {
            tokio::time::timeout(REQUEST_TIMEOUT, get(socket, path))
                .await
                .unwrap_or_else(|_| {
                    Err(GateRefusal::Timeout {
                        path: path.to_owned(),
                        socket: socket.to_string(),
                        after: REQUEST_TIMEOUT,
                    })
                })
        }
        .boxed()
    }
}

async fn get(socket: &InstanceAddress, path: &str) -> Result<(), GateRefusal> {
    let stream = socket
        .connect()
        .await
        .map_err(|source| GateRefusal::Connect {
            socket: socket.to_string(),
            source,
        })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|source| GateRefusal::Handshake {
                socket: socket.to_string(),
                source,
            })?;
    let conn = tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|source| GateRefusal::BadPath {
            path: path.to_owned(),
            source,
        })?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|source| GateRefusal::Request {
            path: path.to_owned(),
            socket: socket.to_string(),
            source,
        })?;
    let status = resp.status();
    if status.is_success() {
        conn.abort();
        return Ok(());
    }
    // The app's own reason, as it would show in its journal.
    let body = http_body_util::Limited::new(resp.into_body(), 4096);
    let reason = http_body_util::BodyExt::collect(body)
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    conn.abort();
    let reason: String = reason
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    Err(GateRefusal::Status {
        path: path.to_owned(),
        status,
        reason: reason.trim().to_owned(),
    })
}
