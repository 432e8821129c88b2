//! IMDSv2, the few requests hostd makes of it: a session token (PUT), then
//! plain GETs carrying it, over HTTP/1.1 on hyper's connection API.
//!
//! Not aws-config's IMDS client: that one brings up the SDK's whole HTTP
//! stack (rustls, aws-lc, the system's root certificates) for a plain-HTTP
//! link-local service, and on a host without `[secrets]` or `[backup]`
//! nothing else needs that stack. It was about 2 MiB of hostd's idle
//! resident memory. `AWS_EC2_METADATA_SERVICE_ENDPOINT` and
//! `..._ENDPOINT_MODE=IPv6` are honoured as the SDK does.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

const ENDPOINT_IPV4: &str = "http://169.254.169.254";
const ENDPOINT_IPV6: &str = "http://[fd00:ec2::254]";
/// The token outlives discovery by far; IMDS allows up to six hours.
const TOKEN_TTL_SECONDS: &str = "21600";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The whole exchange (connect, request, body) of one attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per request on a timeout, a connection error or a 5xx.
pub(super) const MAX_ATTEMPTS: u32 = 3;
/// Metadata values are short; anything longer is not what we asked for.
const MAX_BODY: usize = 64 * 1024;

/// One failed metadata request, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("{endpoint} is not a usable metadata endpoint (http://host[:port])")]
    Endpoint { endpoint: String },
    #[error("cannot connect to {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("HTTP exchange failed")]
    Http(#[source] hyper::Error),
    #[error("`{0}` is not a valid metadata path")]
    Path(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("the answer is not UTF-8 text of at most {MAX_BODY} bytes")]
    Body,
}

impl ImdsError {
    /// Worth another attempt: the service may be starting or busy.
    fn transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout | Self::Http(_) => true,
            Self::Status(code) => *code >= 500,
            Self::Endpoint { .. } | Self::Path(_) | Self::Body => false,
        }
    }
}

pub fn disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// As the SDK resolves it: an explicit endpoint, else the IPv6 address in
/// IPv6 mode, else the usual link-local IPv4 address.
pub fn endpoint() -> String {
    if let Ok(e) = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        && !e.trim().is_empty()
    {
        return e.trim().trim_end_matches('/').to_owned();
    }
    match std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
        Ok(m) if m.eq_ignore_ascii_case("ipv6") => ENDPOINT_IPV6.to_owned(),
        _ => ENDPOINT_IPV4.to_owned(),
    }
}

/// An IMDSv2 session: the endpoint and the token every GET carries.
pub struct Client {
    /// `host:port` to connect to.
    address: String,
    /// `host[:port]` as given: the Host header.
    authority: String,
    endpoint: String,
    token: String,
}

impl Client {
    /// Asks for a session token at `endpoint` (`http://host[:port]`).
    pub async fn connect(endpoint: &str) -> Result<Self, ImdsError> {
        let bad = || ImdsError::Endpoint {
            endpoint: endpoint.to_owned(),
        };
        let authority = endpoint.strip_prefix("http://").ok_or_else(bad)?;
        if authority.is_empty() || authority.contains('/') {
            return Err(bad());
        }
        let mut client = Self {
            address: socket_address(authority),
            authority: authority.to_owned(),
            endpoint: endpoint.to_owned(),
            token: String::new(),
        };
        client.token = client
            .with_retries(Method::PUT, "/latest/api/token")
            .await?;
        Ok(client)
    }

    /// The text at `path` (`/latest/meta-data/...`).
    pub async fn get(&self, path: &str) -> Result<String, ImdsError> {
        self.with_retries(Method::GET, path).await
    }

    async fn with_retries(&self, method: Method, path: &str) -> Result<String, ImdsError> {
        let mut attempt = 1;
        loop {
            let result =
                match tokio::time::timeout(REQUEST_TIMEOUT, self.request(method.clone(), path))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(ImdsError::Timeout),
                };
            match result {
                Err(e) if e.transient() && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn request(&self, method: Method, path: &str) -> Result<String, ImdsError> {
        let connect = tokio::net::TcpStream::connect(self.address.as_str());
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(ImdsError::Connect {
                    endpoint: self.endpoint.clone(),
                    source,
                });
            }
            Err(_) => return Err(ImdsError::Timeout),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ImdsError::Http)?;
        // Ends when the answer is read and `sender` drops; aborted below in
        // any case.
        let driver = tokio::spawn(conn);
        let request = Request::builder()
            .method(&method)
            .uri(path)
            .header(hyper::header::HOST, self.authority.as_str())
            .header(
                hyper::header::USER_AGENT,
                concat!("hostd/", env!("CARGO_PKG_VERSION")),
            );
        let request = if method == Method::PUT {
            request.header("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
        } else {
            request.header("x-aws-ec2-metadata-token", self.token.as_str())
        };
        let result = async {
            let request = request
                .body(Empty::<Bytes>::new())
                .map_err(|_| ImdsError::Path(path.to_owned()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(ImdsError::Http)?;
            if !response.status().is_success() {
                return Err(ImdsError::Status(response.status().as_u16()));
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|_| ImdsError::Body)?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|_| ImdsError::Body)
        }
        .await;
        drop(sender);
        driver.abort();
        result
    }
}

/// `host[:port]` with HTTP's port 80 when none is given (`[v6]` too).
fn socket_address(authority: &str) -> String {
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) => !port.is_empty() && !port.contains(']') && !host.is_empty(),
        None => false,
    };
    if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_port_is_80() {
        assert_eq!(socket_address("169.254.169.254"), "169.254.169.254:80");
        assert_eq!(socket_address("[fd00:ec2::254]"), "[fd00:ec2::254]:80");
        assert_eq!(socket_address("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(socket_address("[::1]:8080"), "[::1]:8080");
    }
}
