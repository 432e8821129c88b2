//! What every AWS client of hostd shares: the SDK configuration with our
//! region and endpoint overrides and explicit retry and timeout bounds.
//! Each service chooses its own bounds (SSM pages are small and throttled;
//! S3 moves megabytes), so they are parameters, not constants here.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{ConfigLoader, Region, SdkConfig};

/// Overrides from hostd's configuration; `None` leaves the SDK's default
/// chain in charge (environment, profile, instance metadata).
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub region: Option<&'a str>,
    /// A stand-in such as moto, or a VPC endpoint.
    pub endpoint_url: Option<&'a str>,
}

/// Resolves region and credential providers once. Credentials themselves are
/// fetched lazily and refreshed by the SDK before they expire, so the
/// result is meant to be kept for the life of the process.
///
/// The loader is a parameter so tests can give static credentials and
/// nothing asks instance metadata.
pub async fn load(
    loader: ConfigLoader,
    target: Target<'_>,
    retry: RetryConfig,
    timeouts: TimeoutConfig,
) -> SdkConfig {
    let mut loader = loader.retry_config(retry).timeout_config(timeouts);
    if let Some(region) = target.region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(url) = target.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
