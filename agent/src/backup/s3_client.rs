//! The S3 client under the backup repository: the default credential chain
//! (the instance profile through IMDSv2 on EC2), our bounds on time and
//! retries, and path-style addressing when the endpoint is overridden.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::aws::Target;

/// Bounds so an unreachable or stalled endpoint fails in bounded time. Pack
/// files are tens of MiB (rustic's default 32 MiB, growing with the square
/// root of the repository size), so an attempt may legitimately take
/// minutes on a slow link; a stall is caught sooner by the SDK's
/// stalled-stream protection (on by default), which fails a transfer that
/// moves nothing for seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// From sending the request to the first byte of the answer.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(900);
/// The SDK's operation timeout ends when the response headers arrive; a
/// GET's body is read after that. This bounds one whole call, body included.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(1200);
/// Attempts per request. Standard mode: exponential backoff with full
/// jitter on throttling, 5xx and connection errors. Not adaptive: that
/// mode slows the whole client down after throttling, and a backup is one
/// writer that would rather finish.
const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no AWS region for the backup bucket: set it in the configuration or AWS_REGION, or run on EC2 where instance metadata gives it"
    )]
    NoRegion,
}

/// A client from the default chain, with the overrides in `target`.
pub async fn client(target: Target<'_>) -> Result<aws_sdk_s3::Client, ClientError> {
    client_with_loader(aws_config::defaults(BehaviorVersion::latest()), target).await
}

/// Like [`client`] from a loader the caller prepared (tests and the probe
/// give static credentials, so nothing asks instance metadata).
pub async fn client_with_loader(
    loader: aws_config::ConfigLoader,
    target: Target<'_>,
) -> Result<aws_sdk_s3::Client, ClientError> {
    let retry = RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_secs(1))
        .with_max_backoff(Duration::from_secs(20));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(FIRST_BYTE_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let sdk = crate::aws::load(loader, target, retry, timeouts).await;
    let Some(region) = sdk.region() else {
        return Err(ClientError::NoRegion);
    };
    tracing::debug!(%region, endpoint = ?sdk.endpoint_url(), "S3 client ready");
    let mut config = aws_sdk_s3::config::Builder::from(&sdk);
    // Emulators (moto, MinIO) serve one host name: virtual-hosted addressing
    // (bucket.host) would not resolve. Also when AWS_ENDPOINT_URL set it.
    if sdk.endpoint_url().is_some() {
        config = config.force_path_style(true);
    }
    Ok(aws_sdk_s3::Client::from_conf(config.build()))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The request an overridden endpoint receives names the bucket in the
    /// path, on loopback: a one-shot HTTP server answers 404.
    #[tokio::test]
    async fn an_endpoint_override_addresses_the_bucket_in_the_path() -> Result<(), String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let reply = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            s.write_all(reply.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(head)
        });
        let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test");
        let loader = aws_config::defaults(BehaviorVersion::latest()).credentials_provider(creds);
        let target = Target {
            region: Some("eu-west-1"),
            endpoint_url: Some(&url),
        };
        let client = client_with_loader(loader, target)
            .await
            .map_err(|e| e.to_string())?;
        let r = client
            .head_object()
            .bucket("bkt")
            .key("pre/config")
            .send()
            .await;
        assert!(r.is_err());
        let head = server.await.map_err(|e| e.to_string())??;
        assert!(head.starts_with("HEAD /bkt/pre/config "), "{head}");
        Ok(())
    }
}
