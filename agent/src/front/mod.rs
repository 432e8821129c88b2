//! hostd's front (the `hostd-front` binary, run by hostd-front.service):
//! the public port of each app on a port, forwarding HTTP to that app's
//! instances on their private ports on loopback ([`proxy`]), least busy first
//! ([`balance`]). Its listening sockets belong to systemd (a socket unit
//! per service, named after it), so a restart of the front, of hostd or of
//! an app refuses no connection; what it routes where is hostd's to say,
//! in a file only root can write, read at start and on SIGHUP
//! ([`routes`]), and over the front's control socket (root and the front
//! only), where hostd also reads the requests in flight per instance (to
//! drain one before stopping it) and the counts per service ([`stats`]).
//! hostd's side of that socket is [`client`].

pub mod balance;
pub mod client;
pub mod proxy;
pub mod routes;
pub mod stats;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::lifetime::Lifetime;
use balance::Table;
use proxy::Proxy;
use stats::{ServiceStats, Stats};

/// How long open requests have to end when the front stops.
const DRAIN_BOUND: Duration = Duration::from_secs(30);
/// A client has this long to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection accepted just before the front stops has to send
/// its first request (see [`serve_connection`]).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error(transparent)]
    Routes(#[from] routes::RoutesError),
    #[error(
        "systemd passed no listening sockets: the front runs from hostd-front.service, which hostd starts with a socket unit per app on a port"
    )]
    NoSockets,
    #[error("cannot take listening socket {index} ({name}) from systemd")]
    Socket {
        index: usize,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve the control socket {path}")]
    Control {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch for signals")]
    Signal(#[source] std::io::Error),
}

/// What the control socket answers to `GET /stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FrontStats {
    pub services: BTreeMap<String, ServiceStats>,
    /// Every instance still counted (routed, or draining): its port and
    /// the requests in flight to it.
    pub in_flight: Vec<(u16, u64)>,
}

#[derive(Default)]
pub struct Front {
    table: Arc<Table>,
    stats: Arc<Stats>,
}

impl Front {
    pub fn apply(&self, routes: &routes::RoutesFile) {
        self.table.apply(routes);
    }

    pub fn stats(&self) -> FrontStats {
        FrontStats {
            services: self.stats.snapshot(),
            in_flight: self.table.in_flight(),
        }
    }

    /// Serves `service`'s public listener until the lifetime ends; then
    /// the requests in flight finish (bounded) and idle connections close.
    pub fn serve(&self, service: String, listener: tokio::net::TcpListener, lifetime: &Lifetime) {
        let proxy = Arc::new(Proxy::new(Arc::clone(&self.table), Arc::clone(&self.stats)));
        let ending = lifetime.clone();
        let service: Arc<str> = service.into();
        lifetime.spawn("front listener", async move {
            // Connections are joined here, each told to finish its request
            // and close when the front stops.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors or memory: wait, do not spin.
                            tracing::warn!(%service, "accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = ending.ending() => break,
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    Arc::clone(&proxy),
                    Arc::clone(&service),
                    ending.clone(),
                ));
            }
            let _ = tokio::time::timeout(DRAIN_BOUND, async {
                while connections.join_next().await.is_some() {}
            })
            .await;
        });
    }

    fn control_routes(self: &Arc<Self>) -> axum::Router {
        let reader = Arc::clone(self);
        let writer = Arc::clone(self);
        axum::Router::new()
            .route("/stats", get(move || async move { Json(reader.stats()) }))
            .route(
                "/routes",
                axum::routing::put(move |body: axum::body::Bytes| async move {
                    match routes::parse(&body) {
                        Ok(r) => {
                            writer.apply(&r);
                            axum::http::StatusCode::NO_CONTENT
                        }
                        Err(e) => {
                            tracing::error!("refused routes from hostd: {e}");
                            axum::http::StatusCode::UNPROCESSABLE_ENTITY
                        }
                    }
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(
                routes::MAX_ROUTES_BYTES as usize,
            ))
    }
}

/// Runs the front until SIGTERM: the listeners systemd passed, routes from
/// `routes_path` (again on SIGHUP) and from hostd on `control_socket`.
pub async fn run(routes_path: &Path, control_socket: &Path) -> Result<(), FrontError> {
    let lifetime = Lifetime::new();
    let front = Arc::new(Front::default());
    front.apply(&routes::load(routes_path)?);
    let listeners = listeners_from_systemd()?;
    for (name, listener) in listeners {
        tracing::info!(service = name, "serving");
        front.serve(name, listener, &lifetime);
    }
    let _ = std::fs::remove_file(control_socket);
    let control =
        tokio::net::UnixListener::bind(control_socket).map_err(|source| FrontError::Control {
            path: control_socket.to_owned(),
            source,
        })?;
    let routes = front.control_routes();
    let ending = lifetime.clone();
    lifetime.spawn("front control", async move {
        let _ = axum::serve(control, routes)
            .with_graceful_shutdown(async move { ending.ending().await })
            .await;
    });
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).map_err(FrontError::Signal)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(FrontError::Signal)?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                match routes::load(routes_path) {
                    Ok(r) => {
                        front.apply(&r);
                        tracing::info!("routes reloaded");
                    }
                    // The routes in use stay: a bad file must not drop traffic.
                    Err(e) => tracing::error!("keeping the routes in use: {}", hostd_api::error_chain(&e)),
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = terminate.recv() => break,
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    lifetime.finish(DRAIN_BOUND + Duration::from_secs(5)).await;
    let _ = std::fs::remove_file(control_socket);
    Ok(())
}

/// `(service, listener)` for each socket systemd passed, named by the
/// socket units' `FileDescriptorName=`.
fn listeners_from_systemd() -> Result<Vec<(String, tokio::net::TcpListener)>, FrontError> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .unwrap_or_default()
        .split(':')
        .map(str::to_owned)
        .collect();
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Err(FrontError::NoSockets);
    }
    let mut out = Vec::new();
    for index in 0..fds.len() {
        let name = names.get(index).cloned().unwrap_or_default();
        let socket_err = |source| FrontError::Socket {
            index,
            name: name.clone(),
            source,
        };
        let Some(std_listener) = fds.take_tcp_listener(index).map_err(socket_err)? else {
            continue;
        };
        std_listener.set_nonblocking(true).map_err(socket_err)?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(socket_err)?;
        out.push((name, listener));
    }
    Ok(out)
}

/// One client connection until it closes or the front stops. Stopping, a
/// connection that has not sent a request yet is given
/// [`FIRST_REQUEST_GRACE`] to send one: it was accepted from systemd's
/// socket just before the end, and closing it unanswered would fail a
/// request that the next front would have served. After that (or at once
/// for a connection that has served requests) it finishes the request in
/// flight and closes.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    proxy: Arc<Proxy>,
    service: Arc<str>,
    stop: Lifetime,
) {
    let requested = Arc::new(tokio::sync::Notify::new());
    let seen = Arc::clone(&requested);
    let handler = hyper::service::service_fn(move |req| {
        let proxy = Arc::clone(&proxy);
        let name = Arc::clone(&service);
        // Stores a permit when nobody waits: never lost.
        seen.notify_one();
        async move { Ok::<_, std::convert::Infallible>(proxy.handle(&name, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stop.ending() => {}
    }
    tokio::select! {
        _ = conn.as_mut() => return,
        () = requested.notified() => {}
        () = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(DRAIN_BOUND, conn).await;
}
