//! An API instance's own health endpoint: `GET {health_path}` over HTTP/1.1
//! on its Unix socket (`/run/api/{instance}/health.sock`) or, for an app
//! on a port, its port on loopback; 2xx is healthy.
//!
//! A fresh connection per check: a local socket costs microseconds, and a
//! kept connection would hide an instance that stopped accepting new ones.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::{CheckError, InstanceAddress, InstanceProbe, find_io, io_kind};

pub struct HttpUnixProbe {
    pub timeout: Duration,
}

impl InstanceProbe for HttpUnixProbe {
    fn check<'a>(
        &'a self,
        socket: &'a InstanceAddress,
        path: &'a str,
    ) -> BoxFuture<'a, Result<(), CheckError>> {
        async move {
            let what = format!("GET {path} on {socket}");
            match tokio::time::timeout(self.timeout, get(socket, path)).await {
                Ok(Ok(200..=299)) => Ok(()),
                Ok(Ok(code)) => Err(CheckError::Failed {
                    what,
                    reason: format!("HTTP {code}"),
                }),
                Ok(Err(reason)) => Err(CheckError::Failed { what, reason }),
                Err(_) => Err(CheckError::Timeout {
                    what,
                    after: self.timeout,
                }),
            }
        }
        .boxed()
    }
}

/// The status code, or a short reason.
async fn get(socket: &InstanceAddress, path: &str) -> Result<u16, String> {
    let stream = socket.connect().await.map_err(|e| io_kind(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| hyper_reason(&e))?;
    // The connection task ends when the response is read and `sender` drops.
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .header("User-Agent", concat!("hostd/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|_| format!("`{path}` is not a valid request path"))?;
    let result = sender.send_request(request).await;
    drop(sender);
    driver.abort();
    result
        .map(|resp| resp.status().as_u16())
        .map_err(|e| hyper_reason(&e))
}

fn hyper_reason(e: &hyper::Error) -> String {
    if let Some(io) = find_io(e) {
        return io_kind(io);
    }
    if e.is_incomplete_message() || e.is_closed() {
        return "connection closed before an answer".into();
    }
    if e.is_parse() {
        return "answer is not HTTP".into();
    }
    "HTTP request failed".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get as route_get;

    async fn serve(dir: &std::path::Path, code: StatusCode) -> std::io::Result<InstanceAddress> {
        let sock = dir.join("health.sock");
        let listener = tokio::net::UnixListener::bind(&sock)?;
        let app = Router::new().route("/health", route_get(move || async move { code }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(InstanceAddress::Unix(sock))
    }

    #[tokio::test]
    async fn two_hundred_is_healthy_and_503_names_the_code() -> std::io::Result<()> {
        let probe = HttpUnixProbe {
            timeout: Duration::from_secs(2),
        };
        let ok = tempfile::tempdir()?;
        let sock = serve(ok.path(), StatusCode::OK).await?;
        assert_eq!(probe.check(&sock, "/health").await, Ok(()));

        let bad = tempfile::tempdir()?;
        let sock = serve(bad.path(), StatusCode::SERVICE_UNAVAILABLE).await?;
        let err = probe
            .check(&sock, "/health")
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(err, Some(format!("GET /health on {sock}: HTTP 503")));
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_socket_says_so() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let probe = HttpUnixProbe {
            timeout: Duration::from_secs(2),
        };
        let sock = InstanceAddress::Unix(dir.path().join("nope.sock"));
        let err = probe
            .check(&sock, "/health")
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "GET /health on {sock}: socket not found (not running?)"
            ))
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_app_on_a_port_is_asked_on_loopback() -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let app = Router::new().route("/up", route_get(|| async { StatusCode::OK }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let probe = HttpUnixProbe {
            timeout: Duration::from_secs(2),
        };
        let address = InstanceAddress::Loopback(port);
        assert_eq!(probe.check(&address, "/up").await, Ok(()));
        let err = probe
            .check(&address, "/health")
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!("GET /health on 127.0.0.1:{port}: HTTP 404"))
        );
        Ok(())
    }
}
