//! What every use of the repository needs: the `[backup]` settings, the
//! password (from the delivered secrets), one S3 client made on first use,
//! and this host's name in the repository. Backups, drills, listings and
//! restores all start here.

use std::sync::Arc;

use rustic_core::RepositoryOptions;
use tokio::sync::{OnceCell, watch};

use super::{BadLocation, ClientError, S3Backend};
use crate::aws::Target;
use crate::config::{BackupConfig, Config};
use crate::secrets::SecretsState;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("backups are not configured on this host (no [backup] section in hostd.toml)")]
    NotConfigured,
    #[error("the repository password (secrets.backup_password) is not available")]
    NoPassword,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Location(#[from] BadLocation),
}

pub struct Context {
    config: Arc<Config>,
    secrets: watch::Receiver<SecretsState>,
    hostname: String,
    client: OnceCell<aws_sdk_s3::Client>,
}

impl Context {
    pub fn new(
        config: Arc<Config>,
        secrets: watch::Receiver<SecretsState>,
        hostname: String,
    ) -> Self {
        Self {
            config,
            secrets,
            hostname,
            client: OnceCell::new(),
        }
    }

    /// The host whose snapshots these are (`backup.host`, else this one).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    pub fn redis_password(&self) -> Option<crate::secrets::SecretValue> {
        self.secrets.borrow().wired.redis_password.clone()
    }

    pub fn redis_address(&self) -> &str {
        self.config.redis_address()
    }

    pub fn backup(&self) -> Result<&BackupConfig, AccessError> {
        self.config
            .backup
            .as_ref()
            .ok_or(AccessError::NotConfigured)
    }

    /// The repository's storage and password.
    pub async fn repository(&self) -> Result<(S3Backend, String, RepositoryOptions), AccessError> {
        let b = self.backup()?;
        let password = self
            .secrets
            .borrow()
            .wired
            .backup_password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .ok_or(AccessError::NoPassword)?;
        let client = self
            .client
            .get_or_try_init(|| async {
                super::client(Target {
                    region: b.region.as_ref().map(|r| r.as_str()),
                    endpoint_url: b.endpoint_url.as_ref().map(|u| u.as_str()),
                })
                .await
            })
            .await?
            .clone();
        let prefix = b.prefix_for(&self.hostname);
        let storage = S3Backend::new(
            client,
            tokio::runtime::Handle::current(),
            b.bucket.as_str(),
            &prefix,
        )?;
        let options = RepositoryOptions::default().cache_dir(b.cache_dir.0.clone());
        Ok((storage, password, options))
    }

    /// The databases backed up: `backup.databases`, else every service's.
    pub fn databases(&self) -> Vec<String> {
        match self.backup().ok().and_then(|b| b.databases.clone()) {
            Some(list) => list,
            None => self
                .config
                .services
                .values()
                .filter_map(|s| s.database.clone())
                .collect(),
        }
    }

    /// hostd's administrator connection to PostgreSQL.
    pub fn admin(&self) -> &str {
        self.config.postgres_admin()
    }
}
