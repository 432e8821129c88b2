//! An instance's own health check: `GET path` over HTTP on its Unix socket.
//! Instances share one public listening socket, so the per-instance socket
//! is the only way to ask one particular instance.

use std::time::Duration;

use http_body_util::Empty;
use hyper::Request;
use hyper::body::Bytes;

/// Between two looks while waiting for a unit or an instance. A look is a
/// D-Bus property read and a request on a local socket (microseconds), and
/// a deploy waits for each instance in turn: a short interval is time saved
/// on every restart.
pub const POLL: Duration = Duration::from_millis(50);

/// One answer must come within this; a hung instance is not healthy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Ok on a 2xx answer; otherwise what went wrong, in words.
pub async fn get(socket: &str, path: &str) -> Result<(), String> {
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("cannot connect to {socket}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake on {socket}: {e}"))?;
        let conn = tokio::spawn(conn);
        let req = Request::get(path)
            .header(hyper::header::HOST, "localhost")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad health path {path}: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("GET {path} on {socket}: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            conn.abort();
            return Ok(());
        }
        // The app's own reason, as it would show in its journal: the
        // first line of the body, short.
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
        if reason.trim().is_empty() {
            Err(format!("GET {path} answered {status}"))
        } else {
            Err(format!("GET {path} answered {status}: {}", reason.trim()))
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            format!(
                "GET {path} on {socket}: no answer within {}s",
                REQUEST_TIMEOUT.as_secs()
            )
        })?
}
