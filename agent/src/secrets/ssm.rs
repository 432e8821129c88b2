//! The real source: SSM Parameter Store's GetParametersByPath through the
//! AWS SDK, with its default credential chain (the instance profile through
//! IMDSv2 on EC2; environment or profile elsewhere).

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::Parameter;

use super::set::{Secret, SecretSet, SecretValue, relative_name};
use super::source::{FetchError, SecretSource};
use crate::config::SecretsConfig;

/// The API's maximum page size.
const PAGE_SIZE: i32 = 10;
/// Bounds so an unreachable endpoint fails in bounded time: per attempt,
/// per page (all attempts), and for the whole set (all pages).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts per page. The SDK backs off exponentially with full jitter.
const MAX_ATTEMPTS: u32 = 4;

pub struct SsmSource {
    client: aws_sdk_ssm::Client,
    prefix: String,
}

impl SsmSource {
    /// Resolve region and credentials providers once; credentials are
    /// fetched lazily and refreshed by the SDK before they expire. Keep the
    /// source for the life of the process: the client keeps its
    /// connections and its retry budget.
    pub async fn from_config(config: &SecretsConfig) -> Result<Self, FetchError> {
        Self::with_loader(config, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// Like [`SsmSource::from_config`] from a loader the caller prepared
    /// (tests give static credentials, so nothing asks instance metadata).
    pub async fn with_loader(
        config: &SecretsConfig,
        loader: aws_config::ConfigLoader,
    ) -> Result<Self, FetchError> {
        let prefix = config.path.as_str().to_owned();
        // Standard mode: throttling and transient errors are retried with
        // exponential backoff and full jitter. Pages are fetched one at a
        // time, and hosts spread their refreshes (refresh.rs), which keeps
        // a large prefix within SSM's request limits. Not adaptive mode: its
        // client-side rate limiter, after two throttled requests, waited
        // past our 30 s page bound (see the throttling tests).
        let retry = RetryConfig::standard()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(Duration::from_millis(500))
            .with_max_backoff(Duration::from_secs(20));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(PAGE_TIMEOUT)
            .build();
        let mut loader = loader.retry_config(retry).timeout_config(timeouts);
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.as_str().to_owned()));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.as_str());
        }
        let sdk = loader.load().await;
        let Some(region) = sdk.region() else {
            return Err(FetchError::NoRegion { prefix });
        };
        tracing::debug!(%region, %prefix, "SSM client ready");
        Ok(Self {
            client: aws_sdk_ssm::Client::new(&sdk),
            prefix,
        })
    }

    async fn fetch_all(&self) -> Result<SecretSet, FetchError> {
        let mut pages = self
            .client
            .get_parameters_by_path()
            .path(&self.prefix)
            .recursive(true)
            .with_decryption(true)
            .max_results(PAGE_SIZE)
            .into_paginator()
            .send();
        let mut set = SecretSet::new();
        let mut count = 0usize;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(&self.prefix, e))?;
            for p in page.parameters() {
                set.insert(to_secret(&self.prefix, p)?);
                count += 1;
            }
        }
        tracing::debug!(prefix = %self.prefix, count, "fetched parameters");
        Ok(set)
    }
}

impl SecretSource for SsmSource {
    async fn fetch(&self) -> Result<SecretSet, FetchError> {
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_all()).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout {
                prefix: self.prefix.clone(),
                secs: FETCH_TIMEOUT.as_secs(),
            }),
        }
    }
}

fn to_secret(prefix: &str, p: &Parameter) -> Result<Secret, FetchError> {
    let full = p.name().ok_or_else(|| FetchError::BadResponse {
        prefix: prefix.to_owned(),
        what: "a parameter without a name",
    })?;
    let name = relative_name(prefix, full).map_err(|reason| FetchError::BadName {
        name: full.to_owned(),
        reason,
    })?;
    let value = p.value().ok_or_else(|| FetchError::BadName {
        name: full.to_owned(),
        reason: "SSM returned it without a value",
    })?;
    Ok(Secret {
        name: name.to_owned(),
        value: SecretValue::new(value.to_owned()),
        version: p.version(),
        last_modified: p
            .last_modified_date()
            .and_then(|d| SystemTime::try_from(*d).ok()),
    })
}

/// The kind of failure and what may be said about it. Response bodies are
/// never quoted: a malformed one could contain parameter values.
fn classify<E, R>(prefix: &str, e: SdkError<E, R>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let prefix = prefix.to_owned();
    match &e {
        SdkError::TimeoutError(_) => FetchError::Timeout {
            prefix,
            secs: PAGE_TIMEOUT.as_secs(),
        },
        // Connection refused, DNS, TLS, or no credentials (resolved just
        // before sending): the error chain says which, and holds no response.
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => {
            FetchError::Unreachable {
                prefix,
                detail: hostd_api::error_chain(&e),
            }
        }
        SdkError::ServiceError(s) => FetchError::Refused {
            prefix,
            code: s.err().code().unwrap_or("an unnamed error").to_owned(),
        },
        SdkError::ResponseError(_) => FetchError::BadResponse {
            prefix,
            what: "malformed response",
        },
        _ => FetchError::Unreachable {
            prefix,
            detail: "unknown SDK error".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_secrets_or_errors_naming_them() {
        let p = Parameter::builder()
            .name("/app/prod/db/password")
            .value("hunter2")
            .version(3)
            .build();
        let s = to_secret("/app/prod/", &p);
        assert!(
            matches!(&s, Ok(s) if s.name == "db/password" && s.version == 3 && s.value.expose() == "hunter2"),
            "{s:?}"
        );
        let outside = Parameter::builder()
            .name("/app/staging/db")
            .value("hunter2")
            .build();
        let e = to_secret("/app/prod/", &outside)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("/app/staging/db") && e.contains("not under"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let odd = Parameter::builder()
            .name("/app/prod/a b")
            .value("hunter2")
            .build();
        let e = to_secret("/app/prod/", &odd)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/app/prod/a b") && !e.contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn unreachable_endpoint_fails_naming_the_prefix_without_values() -> Result<(), String> {
        // A port nobody listens on, on loopback: refused at once, every
        // attempt.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        drop(listener);
        let source = source_at(&format!("http://127.0.0.1:{port}")).await?;
        match source.fetch().await {
            Err(FetchError::Unreachable { prefix, .. })
            | Err(FetchError::Timeout { prefix, .. }) => {
                assert_eq!(prefix, "/app/prod/");
            }
            other => return Err(format!("unexpected: {other:?}")),
        }
        Ok(())
    }

    async fn source_at(endpoint: &str) -> Result<SsmSource, String> {
        let config: crate::config::Config = toml::from_str(&format!(
            "[secrets]\npath = \"/app/prod/\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n"
        ))
        .map_err(|e| e.to_string())?;
        let secrets = config.secrets.ok_or("no [secrets]")?;
        // Static credentials: the default chain would ask this machine's
        // instance metadata, which is not ours to talk to.
        let loader = aws_config::defaults(BehaviorVersion::latest()).credentials_provider(
            aws_sdk_ssm::config::Credentials::new("test", "test", None, None, "test"),
        );
        SsmSource::with_loader(&secrets, loader)
            .await
            .map_err(|e| e.to_string())
    }

    /// An SSM stand-in on loopback that answers the first `throttled`
    /// requests with ThrottlingException, then one parameter; counts requests.
    async fn throttling_ssm(
        throttled: usize,
    ) -> Result<(String, std::sync::Arc<std::sync::atomic::AtomicUsize>), String> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use axum::http::{StatusCode, header};
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let json = [(header::CONTENT_TYPE, "application/x-amz-json-1.1")];
                if n < throttled {
                    let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
                    (StatusCode::BAD_REQUEST, json, body)
                } else {
                    let body = r#"{"Parameters":[{"Name":"/app/prod/db","Type":"SecureString","Value":"v","Version":3}]}"#;
                    (StatusCode::OK, json, body)
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((format!("http://{addr}"), seen))
    }

    #[tokio::test]
    async fn throttling_is_retried_with_backoff_until_ssm_answers() -> Result<(), String> {
        let (endpoint, seen) = throttling_ssm(2).await?;
        let set = source_at(&endpoint)
            .await?
            .fetch()
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(set.get("db").map(|s| s.version), Some(3));
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
        Ok(())
    }

    #[tokio::test]
    async fn throttling_that_never_ends_fails_after_the_bounded_attempts() -> Result<(), String> {
        let (endpoint, seen) = throttling_ssm(usize::MAX).await?;
        let e = source_at(&endpoint).await?.fetch().await.err();
        let text = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("/app/prod/"), "{text}");
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            MAX_ATTEMPTS as usize
        );
        Ok(())
    }
}
