//! What every subsystem's routes share: binding hostd's two listeners, the
//! shape of a refusal, NDJSON event streams, and who is on the other end
//! of a control connection.
//!
//! The control API is HTTP/JSON on a Unix socket, never on TCP. The
//! socket's owner and mode (root and `control.group`) are its access
//! control; SSH in front of it (`hostd dial-stdio`) authenticates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hostd_api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen for /health on {addr} (health.listen)")]
    BindHealth {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the control socket {path} (control.socket)")]
    BindControl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control.group: no group named `{0}` on this host (create it, or remove the key)")]
    NoSuchGroup(String),
    #[error("cannot set owner and mode of the control socket {path}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An error a route answers with: it decides its own status. Every
/// subsystem's error enum implements it with an exhaustive match, so a new
/// variant must decide what it means to hostctl.
pub trait Refusal: std::error::Error {
    fn http_status(&self) -> u16;
}

/// The answer to a refused request: the error's status and an
/// [`ErrorBody`] with the whole error chain, logged as `what refused`.
pub fn refuse(what: &str, e: &dyn Refusal) -> Response {
    let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = hostd_api::error_chain(e);
    tracing::warn!(status = code.as_u16(), "{what} refused: {text}");
    error_answer(code, text)
}

/// A refusal that is not an error value (a bad path segment, a body that
/// does not parse).
pub fn error_answer(status: StatusCode, error: String) -> Response {
    (status, Json(ErrorBody { error })).into_response()
}

/// An answer of events, one JSON document per line as each arrives, ending
/// when the sender is dropped.
pub fn ndjson<T: serde::Serialize + Send + 'static>(
    rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> Response {
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response()
}

/// Who is on the other end of a control connection: the `hostd
/// dial-stdio` process sshd started for an operator, found by the socket's
/// peer credentials, and the SSH client address in its environment. Kernel
/// facts, not claims in a request.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub pid: Option<i32>,
    pub uid: Option<u32>,
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tokio::net::UnixListener>,
    > for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        let cred = stream.io().peer_cred().ok();
        Self {
            pid: cred.and_then(|c| c.pid()),
            uid: cred.map(|c| c.uid()),
        }
    }
}

impl Peer {
    /// The peer's user and uid (`admin (uid 1000)`), from its socket
    /// credentials: what the ledger and the log record as the caller.
    pub fn who(&self) -> Option<String> {
        let uid = self.uid?;
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| "?".to_owned(), |u| u.name);
        Some(format!("{name} (uid {uid})"))
    }

    pub fn is_root(&self) -> bool {
        self.uid == Some(0)
    }

    /// The SSH client's address (`SSH_CLIENT`'s first field), when the
    /// peer is a process of an SSH session.
    pub fn ssh_client(&self) -> Option<String> {
        let environ = std::fs::read(format!("/proc/{}/environ", self.pid?)).ok()?;
        environ
            .split(|&b| b == 0)
            .find_map(|var| var.strip_prefix(b"SSH_CLIENT="))
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_owned)
    }
}

/// The bounds of the public listener: anyone who can reach the port can
/// open connections, and none of them may starve the load balancer's
/// health check or hostd's file descriptors.
#[derive(Debug, Clone, Copy)]
pub struct PublicLimits {
    /// Connections served at once; beyond, a new one is closed at once.
    /// hostd.service raises its file limit well above this.
    pub connections: usize,
    /// A connection must send a whole request head within this, also
    /// between requests on a kept-alive connection: idle and slow clients
    /// cost a socket for seconds, not for ever.
    pub header_read_timeout: std::time::Duration,
    /// However busy, a connection is closed this long after it opened.
    pub max_age: std::time::Duration,
}

impl Default for PublicLimits {
    fn default() -> Self {
        Self {
            connections: 4096,
            header_read_timeout: std::time::Duration::from_secs(10),
            max_age: std::time::Duration::from_secs(120),
        }
    }
}

/// Serves `routes` on hostd's public listener (`/health`, `/metrics`, open
/// to the network) until hostd stops, within `limits`.
pub fn serve_tcp(
    listener: tokio::net::TcpListener,
    routes: axum::Router,
    limits: PublicLimits,
    lifetime: &crate::lifetime::Lifetime,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let ending = lifetime.clone();
    lifetime.spawn("health server", async move {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.connections));
        // Connections are joined through the graceful shutdown below, with
        // its own bound, rather than one tracked task each.
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors or memory: wait, do not spin.
                        tracing::warn!("public listener: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = ending.ending() => break,
            };
            let Ok(slot) = std::sync::Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!("public listener: at its connection cap; closing a new one");
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(routes.clone());
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _slot = slot;
                if tokio::time::timeout(limits.max_age, conn).await.is_err() {
                    tracing::debug!("public listener: closed a connection at its age limit");
                }
            });
        }
        // Requests in flight finish; idle connections close now.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
        Ok(())
    })
}

/// Serves the control API on its socket until hostd stops; each request
/// knows its [`Peer`].
pub fn serve_unix(
    listener: tokio::net::UnixListener,
    routes: axum::Router,
    lifetime: &crate::lifetime::Lifetime,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let ending = lifetime.clone();
    lifetime.spawn("control server", async move {
        axum::serve(
            listener,
            routes.into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(async move { ending.ending().await })
        .await
    })
}

pub async fn bind_health(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::BindHealth { addr, source })
}

/// Binds the control socket, replacing a stale one from a previous run, then
/// opens it to root and `group` (0660). Until the chmod the socket has the
/// umask's 0755, which only root can connect to, so there is no open window.
pub fn bind_control(
    path: &Path,
    group: Option<&str>,
) -> Result<tokio::net::UnixListener, HttpError> {
    let bind_err = |source| HttpError::BindControl {
        path: path.to_owned(),
        source,
    };
    let gid = match group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .map_err(|e| bind_err(e.into()))?
                .ok_or_else(|| HttpError::NoSuchGroup(name.to_owned()))?
                .gid,
        ),
        None => None,
    };
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed stale control socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(bind_err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(bind_err)?;
    let perm_err = |source| HttpError::Permissions {
        path: path.to_owned(),
        source,
    };
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::os::unix::fs::chown(path, None, gid.map(|g| g.as_raw())).map_err(perm_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(perm_err)?;
    Ok(listener)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// One request to `router`: the status and the body as text.
    pub(crate) async fn call(
        router: Router,
        request: Request<Body>,
    ) -> Result<(StatusCode, String), Box<dyn std::error::Error>> {
        let resp = router.oneshot(request).await?;
        let code = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((code, String::from_utf8(body.to_vec())?))
    }

    pub(crate) async fn get(
        router: Router,
        uri: &str,
    ) -> Result<(StatusCode, String), Box<dyn std::error::Error>> {
        call(router, Request::get(uri).body(Body::empty())?).await
    }

    #[tokio::test]
    async fn the_control_socket_is_private_and_replaces_a_stale_one()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("control.sock");
        // A stale socket file from a crashed run must not block the bind.
        std::fs::write(&path, b"stale")?;
        let listener = bind_control(&path, None)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let app = Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let stream = tokio::net::UnixStream::connect(&path).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let resp = sender
            .send_request(
                Request::get("/ping").body(http_body_util::Empty::<axum::body::Bytes>::new())?,
            )
            .await?;
        assert_eq!(resp.status(), StatusCode::OK);
        server.abort();
        Ok(())
    }

    #[tokio::test]
    async fn idle_connections_are_closed_and_capped_while_health_answers()
    -> Result<(), Box<dyn std::error::Error>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let lifetime = crate::lifetime::Lifetime::new();
        let limits = PublicLimits {
            connections: 3,
            header_read_timeout: std::time::Duration::from_millis(200),
            max_age: std::time::Duration::from_secs(60),
        };
        let routes = Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        serve_tcp(listener, routes, limits, &lifetime);
        let get = |addr| async move {
            let mut c = tokio::net::TcpStream::connect(addr).await?;
            c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await?;
            let mut answer = String::new();
            c.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        // Two idle connections; one slot stays for the health check.
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(tokio::net::TcpStream::connect(addr).await?);
        }
        assert!(get(addr).await?.starts_with("HTTP/1.1 200"));
        // At the cap, a further connection is closed unanswered.
        let mut third = tokio::net::TcpStream::connect(addr).await?;
        let mut fourth = tokio::net::TcpStream::connect(addr).await?;
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            (third.read(&mut buf).await, fourth.read(&mut buf).await)
        })
        .await?;
        assert!(matches!(
            closed,
            (Ok(0), Ok(0)) | (Ok(0), Err(_)) | (Err(_), Ok(0)) | (Err(_), Err(_))
        ));
        // The idle ones are closed by their header timeout.
        for c in &mut idle {
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf)).await?;
            assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        }
        assert!(get(addr).await?.starts_with("HTTP/1.1 200"));
        lifetime.finish(std::time::Duration::from_secs(5)).await;
        Ok(())
    }

    #[test]
    fn unknown_group_is_a_clear_error() -> Result<(), std::io::Error> {
        let dir = tempfile::tempdir()?;
        let err = bind_control(&dir.path().join("s"), Some("no-such-group-hostd-test"))
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("control.group: no group named `no-such-group-hostd-test` on this host (create it, or remove the key)".into())
        );
        Ok(())
    }
}
