//! hostd's side of the front: the routes file (what a restarted front
//! starts from) and the front's control socket (routes applied now, and
//! the requests in flight per instance, to drain one before stopping it).
//! The manager sees only [`Routing`], so its unit tests use a fake.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

use super::FrontStats;
use super::routes::{RoutesFile, ServiceRoute};

pub const ROUTES_FILE: &str = "/run/hostd/front/routes.json";
pub const CONTROL_SOCKET: &str = "/run/hostd-front/control.sock";

/// Between two looks at the requests in flight while draining.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// One exchange with the front must take no longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("cannot write the front's routes {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot reach hostd's front on {path}: {reason} (is hostd-front.service running? `systemctl status hostd-front`)"
    )]
    Unreachable { path: PathBuf, reason: String },
    #[error("hostd's front refused the routes (HTTP {0})")]
    Refused(u16),
}

/// What the manager needs of the front.
pub trait Routing: Send + Sync {
    /// `service`'s public port forwards to `ports` only, from now on.
    fn route<'a>(
        &'a self,
        service: &'a str,
        ports: &'a [u16],
    ) -> BoxFuture<'a, Result<(), RoutingError>>;

    /// Waits until no request is in flight to any of `ports`, at most
    /// `bound`; false when the bound passed first.
    fn drain<'a>(
        &'a self,
        ports: &'a [u16],
        bound: Duration,
    ) -> BoxFuture<'a, Result<bool, RoutingError>>;
}

/// The front of this host.
pub struct LiveFront {
    routes: Mutex<RoutesFile>,
    file: PathBuf,
    socket: PathBuf,
}

impl LiveFront {
    pub fn new(file: &Path, socket: &Path) -> Self {
        Self {
            routes: Mutex::new(RoutesFile::default()),
            file: file.to_owned(),
            socket: socket.to_owned(),
        }
    }

    /// The routes with `service` at `ports`, written for the front's next
    /// start, as JSON for its control socket.
    fn update(&self, service: &str, ports: &[u16]) -> Result<Vec<u8>, RoutingError> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.services.insert(
            service.to_owned(),
            ServiceRoute {
                backends: ports.to_vec(),
            },
        );
        let json = serde_json::to_vec(&*routes).unwrap_or_default();
        let write = |source| RoutingError::Write {
            path: self.file.clone(),
            source,
        };
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        crate::fsutil::write_atomically(&self.file, &json, 0o644).map_err(write)?;
        Ok(json)
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), RoutingError> {
        let unreachable = |reason: String| RoutingError::Unreachable {
            path: self.socket.clone(),
            reason,
        };
        let exchange = async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let driver = tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, "front")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| unreachable(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let bytes = Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            driver.abort();
            Ok((status, bytes))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(unreachable(format!(
                    "no answer within {}s",
                    REQUEST_TIMEOUT.as_secs()
                )))
            })
    }

    /// What the front counts now.
    pub async fn stats(&self) -> Result<FrontStats, RoutingError> {
        let (status, body) = self.exchange(Method::GET, "/stats", Vec::new()).await?;
        serde_json::from_slice(&body).map_err(|e| RoutingError::Unreachable {
            path: self.socket.clone(),
            reason: format!("HTTP {status}, not its stats: {e}"),
        })
    }

    async fn in_flight(&self) -> Result<BTreeMap<u16, u64>, RoutingError> {
        Ok(self.stats().await?.in_flight.into_iter().collect())
    }
}

impl Routing for LiveFront {
    fn route<'a>(
        &'a self,
        service: &'a str,
        ports: &'a [u16],
    ) -> BoxFuture<'a, Result<(), RoutingError>> {
        async move {
            let json = self.update(service, ports)?;
            let (status, _) = self.exchange(Method::PUT, "/routes", json).await?;
            if status != 204 {
                return Err(RoutingError::Refused(status));
            }
            tracing::info!(service, ?ports, "front routes to");
            Ok(())
        }
        .boxed()
    }

    fn drain<'a>(
        &'a self,
        ports: &'a [u16],
        bound: Duration,
    ) -> BoxFuture<'a, Result<bool, RoutingError>> {
        async move {
            let deadline = tokio::time::Instant::now() + bound;
            loop {
                let counts = self.in_flight().await?;
                if ports
                    .iter()
                    .all(|p| counts.get(p).copied().unwrap_or(0) == 0)
                {
                    return Ok(true);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(false);
                }
                tokio::time::sleep(DRAIN_POLL).await;
            }
        }
        .boxed()
    }
}
