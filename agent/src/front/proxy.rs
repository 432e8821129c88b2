//! One request through the front: to the least busy instance of its
//! service, with the forwarding headers added and hop-by-hop ones dropped,
//! bodies streamed both ways, `Upgrade` (WebSocket) connections tunnelled,
//! and a request with no body and an idempotent method tried on another
//! instance when one refuses the connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::balance::{InFlight, MAX_SENT_PER_INSTANCE, MAX_WAIT, Table};
use super::stats::Stats;

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that describe one connection, not the request (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Sends of one retryable request at most (connections refused count).
const MAX_SENDS: u32 = 3;

/// An incoming request id longer than this, or with odd bytes, is
/// replaced: it ends up in logs.
const MAX_REQUEST_ID: usize = 128;

pub struct Proxy {
    table: Arc<Table>,
    stats: Arc<Stats>,
    client: Client<HttpConnector, ProxyBody>,
    /// `X-Request-Id`s: a per-process prefix and a counter.
    id_prefix: String,
    next_id: AtomicU64,
    /// One journal line per request (`HOSTD_FRONT_ACCESS_LOG=1`); off by
    /// default: at hundreds of requests a second the journal would be
    /// mostly that.
    access_log: bool,
}

/// Set to `1` in hostd-front.service's environment (a drop-in) for one
/// line per request.
pub const ACCESS_LOG_VAR: &str = "HOSTD_FRONT_ACCESS_LOG";

impl Proxy {
    pub fn new(table: Arc<Table>, stats: Arc<Stats>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            // Below the shortest keep-alive common app servers keep (Node:
            // 5 s), so the front seldom reuses one the app is closing.
            .pool_idle_timeout(std::time::Duration::from_secs(4))
            .pool_max_idle_per_host(MAX_SENT_PER_INSTANCE)
            .build(connector);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            table,
            stats,
            client,
            id_prefix: format!("{:x}{:x}", std::process::id(), started & 0xffff_ffff),
            next_id: AtomicU64::new(0),
            access_log: std::env::var(ACCESS_LOG_VAR).is_ok_and(|v| v == "1"),
        }
    }

    pub async fn handle(
        &self,
        service: &str,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        // The path without its query, which may carry tokens.
        let logged = self
            .access_log
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        let id = kept_request_id(req.headers()).unwrap_or_else(|| {
            let n = self.next_id.fetch_add(1, Ordering::Relaxed);
            format!("{}-{n:x}", self.id_prefix)
        });
        let mut response = self.forward(service, peer, req, &id).await;
        let took = started.elapsed();
        self.stats.record(service, response.status(), took);
        // The client can name the request when it reports a problem.
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().entry(X_REQUEST_ID).or_insert(v);
        }
        if let Some((method, path)) = logged {
            tracing::info!(
                target: "access",
                "{service} {} {method} {path} {} {:.1}ms id={id}",
                peer.ip(),
                response.status().as_u16(),
                took.as_secs_f64() * 1000.0
            );
        }
        response
    }

    async fn forward(
        &self,
        service: &str,
        peer: SocketAddr,
        mut req: Request<Incoming>,
        id: &str,
    ) -> Response<ProxyBody> {
        let upgrade = is_upgrade(req.headers());
        let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        prepare(&mut headers, peer, upgrade, id);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let retryable = is_idempotent(&parts.method) && body.is_end_stream() && !upgrade;
        let mut body = Some(body.boxed());
        // Instances that refused a connection, passed over from now on.
        let mut refused = Vec::new();
        // A kept connection the app closed as the request went out (Node
        // closes idle ones after 5 s) fails a send that never reached it:
        // a retryable request goes again, on a new connection.
        let mut sends_left = MAX_SENDS;
        loop {
            let Some(backend) = self.table.pick(service, &refused) else {
                return if refused.is_empty() {
                    answer(StatusCode::SERVICE_UNAVAILABLE, "no instance is serving\n")
                } else {
                    answer(StatusCode::BAD_GATEWAY, "no instance could be reached\n")
                };
            };
            sends_left = sends_left.saturating_sub(1);
            let Ok(mut guard) = InFlight::start(Arc::clone(&backend), MAX_WAIT).await else {
                tracing::warn!(
                    service,
                    port = backend.port,
                    "instance kept busy for {}s: answered 503",
                    MAX_WAIT.as_secs()
                );
                return answer(StatusCode::SERVICE_UNAVAILABLE, "every instance is busy\n");
            };
            let mut out = Request::new(body.take().unwrap_or_else(empty));
            *out.method_mut() = parts.method.clone();
            *out.headers_mut() = headers.clone();
            match format!("http://127.0.0.1:{}{path}", backend.port).parse() {
                Ok(uri) => *out.uri_mut() = uri,
                Err(_) => return answer(StatusCode::BAD_REQUEST, "bad request target\n"),
            }
            match self.client.request(out).await {
                Ok(mut resp) => {
                    if let Some(client_side) = client_side
                        && resp.status() == StatusCode::SWITCHING_PROTOCOLS
                    {
                        let backend_side = hyper::upgrade::on(&mut resp);
                        guard.tunnelled();
                        tokio::spawn(tunnel(client_side, backend_side, guard));
                        return resp.map(|_| empty());
                    }
                    let (mut parts, body) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    let body = Guarded {
                        inner: body,
                        _in_flight: guard,
                    };
                    return Response::from_parts(parts, body.boxed());
                }
                Err(e) if e.is_connect() => {
                    backend.refused();
                    refused.push(backend.port);
                    tracing::warn!(
                        service,
                        port = backend.port,
                        "instance refused a connection"
                    );
                    if !retryable {
                        return answer(
                            StatusCode::BAD_GATEWAY,
                            "the instance could not be reached\n",
                        );
                    }
                }
                Err(e) if retryable && sends_left > 0 => {
                    tracing::debug!(service, port = backend.port, "sending again: {e}");
                }
                Err(e) => {
                    tracing::warn!(
                        service,
                        port = backend.port,
                        "instance failed the request: {e}"
                    );
                    return answer(StatusCode::BAD_GATEWAY, "the instance failed to answer\n");
                }
            }
        }
    }
}

/// What the app gets: forwarding headers, a request id, and none of the
/// client connection's own headers (but those an upgrade needs).
fn prepare(headers: &mut HeaderMap, peer: SocketAddr, upgrade: bool, id: &str) {
    let protocol = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if upgrade && let Some(protocol) = protocol {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    let ip = peer.ip().to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert(X_REQUEST_ID, v);
    }
}

/// The client's `X-Request-Id` when it is one worth keeping.
fn kept_request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(&X_REQUEST_ID)
        .filter(|v| v.len() <= MAX_REQUEST_ID && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    _in_flight: InFlight,
) {
    let (Ok(client), Ok(backend)) = tokio::join!(client, backend) else {
        return;
    };
    let _ =
        tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(backend)).await;
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

fn answer(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// The instance's answer, counted as in flight until its last byte.
struct Guarded {
    inner: Incoming,
    _in_flight: InFlight,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
