//! Who this host is on EC2: region, instance id, type, zone and (when the
//! instance allows tags in metadata) its tags, read once from IMDSv2: a
//! session token (PUT), then plain GETs carrying it. Off EC2, or with
//! `AWS_EC2_METADATA_DISABLED=true`, there is simply no identity.
//! The requests go through [`super::imds`].

use std::collections::BTreeMap;
use std::time::Duration;

use hostd_api::InstanceIdentity;

use super::imds::{Client, ImdsError, disabled, endpoint};

/// Tags beyond this many are not read: a host is not a tag store, and
/// each costs a request.
const MAX_TAGS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("instance metadata (IMDSv2) did not answer {path}")]
    Metadata {
        path: &'static str,
        #[source]
        source: ImdsError,
    },
}

/// The identity, or `None` when metadata is disabled. Fails when the
/// metadata service does not answer the required paths.
pub async fn discover() -> Result<Option<InstanceIdentity>, InstanceError> {
    if disabled() {
        return Ok(None);
    }
    discover_at(&endpoint()).await.map(Some)
}

/// The identity from the metadata service at `endpoint` (tests serve one).
pub async fn discover_at(endpoint: &str) -> Result<InstanceIdentity, InstanceError> {
    const TOKEN: &str = "/latest/api/token";
    let client = Client::connect(endpoint)
        .await
        .map_err(|source| InstanceError::Metadata {
            path: TOKEN,
            source,
        })?;
    let get = |path: &'static str| {
        let client = &client;
        async move {
            client
                .get(path)
                .await
                .map_err(|source| InstanceError::Metadata { path, source })
        }
    };
    let instance_id = get("/latest/meta-data/instance-id").await?;
    let region = get("/latest/meta-data/placement/region").await?;
    let availability_zone = get("/latest/meta-data/placement/availability-zone")
        .await
        .ok();
    let instance_type = get("/latest/meta-data/instance-type").await.ok();
    Ok(InstanceIdentity {
        instance_id,
        region,
        availability_zone,
        instance_type,
        tags: tags(&client).await,
    })
}

/// Empty when the instance does not expose tags in metadata (a 404: the
/// launch setting `InstanceMetadataTags` is off), which is EC2's default.
async fn tags(client: &Client) -> BTreeMap<String, String> {
    let Ok(keys) = client.get("/latest/meta-data/tags/instance").await else {
        return BTreeMap::new();
    };
    let mut tags = BTreeMap::new();
    for key in keys
        .lines()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .take(MAX_TAGS)
    {
        // Tag keys may hold characters a path must not; IMDS only lists
        // keys it can serve, but a key with '/' would address another path.
        if key.contains('/') {
            continue;
        }
        match client
            .get(&format!("/latest/meta-data/tags/instance/{key}"))
            .await
        {
            Ok(v) => {
                tags.insert(key.to_owned(), v);
            }
            Err(e) => tracing::debug!(key, error = %e, "instance tag unreadable"),
        }
    }
    tags
}

/// Discovers, with a few tries over the first minute (the metadata
/// service may lag a fresh boot), and logs what it found.
pub async fn discover_patiently(found: std::sync::Arc<std::sync::OnceLock<InstanceIdentity>>) {
    for attempt in 1..=4u32 {
        match discover().await {
            Ok(Some(id)) => {
                tracing::info!(
                    instance_id = %id.instance_id,
                    region = %id.region,
                    instance_type = id.instance_type.as_deref().unwrap_or("?"),
                    tags = id.tags.len(),
                    "instance identity from IMDSv2"
                );
                let _ = found.set(id);
                return;
            }
            Ok(None) => return,
            Err(e) => {
                let e = hostd_api::error_chain(&e);
                if attempt == 4 {
                    tracing::info!("no instance identity (not on EC2?): {e}");
                    return;
                }
                tracing::debug!(attempt, "instance identity not yet available: {e}");
                tokio::time::sleep(Duration::from_secs(5 * u64::from(attempt))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::routing::put;

    use super::*;

    const TOKEN: &str = "token-1";

    /// An IMDSv2 stand-in on a loopback port: tokens enforced, tags
    /// exposed, and the first `fail_first` GETs answered 503.
    async fn serve(fail_first: u32) -> std::io::Result<String> {
        let failures = Arc::new(AtomicU32::new(fail_first));
        let app = Router::new()
            .route(
                "/latest/api/token",
                put(|headers: HeaderMap| async move {
                    match headers.get("x-aws-ec2-metadata-token-ttl-seconds") {
                        Some(_) => (StatusCode::OK, TOKEN),
                        None => (StatusCode::BAD_REQUEST, ""),
                    }
                }),
            )
            .fallback(move |uri: Uri, headers: HeaderMap| {
                let failures = Arc::clone(&failures);
                async move {
                    if headers
                        .get("x-aws-ec2-metadata-token")
                        .is_none_or(|t| t != TOKEN)
                    {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    if failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                    }
                    let body = match uri.path() {
                        "/latest/meta-data/instance-id" => "i-0123456789abcdef0",
                        "/latest/meta-data/placement/region" => "eu-west-3",
                        "/latest/meta-data/placement/availability-zone" => "eu-west-3a",
                        "/latest/meta-data/instance-type" => "t3.small",
                        "/latest/meta-data/tags/instance" => "Name\nEnvironment\n",
                        "/latest/meta-data/tags/instance/Name" => "web-1",
                        "/latest/meta-data/tags/instance/Environment" => "staging",
                        _ => return (StatusCode::NOT_FOUND, String::new()),
                    };
                    (StatusCode::OK, body.to_owned())
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{addr}"))
    }

    #[tokio::test]
    async fn identity_and_tags_come_with_a_session_token() -> Result<(), Box<dyn std::error::Error>>
    {
        let endpoint = serve(0).await?;
        let id = discover_at(&endpoint).await?;
        assert_eq!(id.instance_id, "i-0123456789abcdef0");
        assert_eq!(id.region, "eu-west-3");
        assert_eq!(id.availability_zone.as_deref(), Some("eu-west-3a"));
        assert_eq!(id.instance_type.as_deref(), Some("t3.small"));
        assert_eq!(
            id.tags.into_iter().collect::<Vec<_>>(),
            [
                ("Environment".to_owned(), "staging".to_owned()),
                ("Name".to_owned(), "web-1".to_owned())
            ]
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_busy_service_is_asked_again() -> Result<(), Box<dyn std::error::Error>> {
        let endpoint = serve(super::super::imds::MAX_ATTEMPTS - 1).await?;
        let client = Client::connect(&endpoint).await?;
        assert_eq!(
            client.get("/latest/meta-data/instance-id").await?,
            "i-0123456789abcdef0"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_path_is_not_retried_and_names_the_status()
    -> Result<(), Box<dyn std::error::Error>> {
        let endpoint = serve(0).await?;
        let client = Client::connect(&endpoint).await?;
        let err = client.get("/latest/meta-data/nothing").await.err();
        assert!(matches!(err, Some(ImdsError::Status(404))), "{err:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_service_that_hangs_up_fails_with_the_token_path() -> std::io::Result<()> {
        // Accepts and closes at once (kept bound: a freed port could be
        // reused by a parallel test's stand-in).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        let err = discover_at(&format!("http://{addr}"))
            .await
            .err()
            .map(|e| hostd_api::error_chain(&e));
        let text = err.unwrap_or_default();
        assert!(
            text.starts_with("instance metadata (IMDSv2) did not answer /latest/api/token"),
            "{text}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_endpoint_must_be_plain_http() {
        for bad in [
            "https://169.254.169.254",
            "169.254.169.254",
            "http://",
            "http://h/x",
        ] {
            let err = Client::connect(bad).await.err();
            assert!(
                matches!(err, Some(ImdsError::Endpoint { .. })),
                "{bad}: {err:?}"
            );
        }
    }
}
