//! Who this host is on EC2: region, instance id, type, zone and (when the
//! instance allows tags in metadata) its tags, read once from IMDSv2 with
//! aws-config's client (session tokens, retries). Off EC2, or with
//! `AWS_EC2_METADATA_DISABLED=true`, there is simply no identity.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::imds::client::Client;
use aws_config::imds::client::error::ImdsError;
use hostd_api::InstanceIdentity;

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

fn disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

fn client() -> Client {
    Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .max_attempts(3)
        .build()
}

/// The identity, or `None` when metadata is disabled. Fails when the
/// metadata service does not answer the required paths.
pub async fn discover() -> Result<Option<InstanceIdentity>, InstanceError> {
    if disabled() {
        return Ok(None);
    }
    let client = client();
    let get = |path: &'static str| {
        let client = &client;
        async move {
            client
                .get(path)
                .await
                .map(String::from)
                .map_err(|source| InstanceError::Metadata { path, source })
        }
    };
    let instance_id = get("/latest/meta-data/instance-id").await?;
    let region = get("/latest/meta-data/placement/region").await?;
    let availability_zone = get("/latest/meta-data/placement/availability-zone")
        .await
        .ok();
    let instance_type = get("/latest/meta-data/instance-type").await.ok();
    Ok(Some(InstanceIdentity {
        instance_id,
        region,
        availability_zone,
        instance_type,
        tags: tags(&client).await,
    }))
}

/// Empty when the instance does not expose tags in metadata (a 404: the
/// launch setting `InstanceMetadataTags` is off), which is EC2's default.
async fn tags(client: &Client) -> BTreeMap<String, String> {
    let Ok(keys) = client.get("/latest/meta-data/tags/instance").await else {
        return BTreeMap::new();
    };
    let keys: String = keys.into();
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
                tags.insert(key.to_owned(), String::from(v));
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
