//! The secrets runtime: fetch (falling back to the last good set), deliver
//! as credentials, and publish what services have through a `watch`
//! channel for the manager's start gate and /health. hostd runs
//! [`Runtime::refresh`] once before the manager starts anything; periodic
//! refresh and rotation build on the same call (its [`Refreshed::changed`]
//! names the services to restart).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use super::delivery::{DeliveryError, deliver};
use super::redis_auth::{self, Applied};
use super::{
    FetchError, Outcome, SecretSet, SecretSource, SecretValue, Store, Tracker, fetch_with_fallback,
};
use crate::config::{Config, ParameterName};

/// What services have been given, for the gate and /health. Names and
/// versions only: nothing here is a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsState {
    /// `[secrets]` is configured.
    pub configured: bool,
    /// Parameter names each service received; None when nothing could be
    /// delivered (no set known, or writing failed).
    pub delivered: Option<BTreeMap<String, BTreeSet<String>>>,
    /// Name → version of the set in use.
    pub versions: BTreeMap<String, i64>,
    /// Name → SSM's LastModifiedDate, where SSM gave one.
    pub modified: BTreeMap<String, SystemTime>,
    pub last_success: Option<SystemTime>,
    /// First failed fetch since the last success.
    pub stale_since: Option<SystemTime>,
    /// Why the last fetch or delivery failed (names prefixes and
    /// parameters only).
    pub problem: Option<String>,
    /// The wired passwords of the set in use, for the code that applies
    /// them (ALTER ROLE, requirepass, the backup repository) and hostd's own
    /// Redis check. `Debug` redacts them; nothing publishes them.
    pub wired: Wired,
    /// Every value of the set in use (delivered or not), for taking them
    /// out of lines shipped off the host. `Debug` redacts them.
    pub known: Arc<[SecretValue]>,
}

/// Values of `secrets.postgres_password`, `redis_password` and
/// `backup_password` where configured and present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wired {
    pub postgres_password: Option<SecretValue>,
    pub redis_password: Option<SecretValue>,
    pub backup_password: Option<SecretValue>,
}

impl Wired {
    fn of(config: &Config, set: &SecretSet) -> Self {
        let Some(secrets) = &config.secrets else {
            return Self::default();
        };
        let value = |name: &Option<ParameterName>| {
            name.as_ref()
                .and_then(|n| set.get(n.as_str()))
                .map(|s| s.value.clone())
        };
        Self {
            postgres_password: value(&secrets.postgres_password),
            redis_password: value(&secrets.redis_password),
            backup_password: value(&secrets.backup_password),
        }
    }
}

impl SecretsState {
    /// "secrets stale since T", for /health's `degraded`.
    pub fn stale_message(&self) -> Option<String> {
        self.stale_since.map(|t| {
            format!(
                "secrets stale since {}",
                humantime::format_rfc3339_seconds(t)
            )
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GateError {
    #[error("{service} is not started: its secrets are not available ({reason})")]
    Unavailable { service: String, reason: String },
    #[error("{service} is not started: required parameter(s) missing: {}", names.join(", "))]
    MissingRequired { service: String, names: Vec<String> },
}

/// Whether `service` may start: it receives no secrets, or it has every
/// required one it selects. Never a partial set.
pub fn gate(config: &Config, state: &SecretsState, service: &str) -> Result<(), GateError> {
    if config.secrets_for(service).is_none() {
        return Ok(());
    }
    let Some(delivered) = &state.delivered else {
        return Err(GateError::Unavailable {
            service: service.to_owned(),
            reason: state
                .problem
                .clone()
                .unwrap_or_else(|| "not fetched yet".to_owned()),
        });
    };
    let has = delivered.get(service);
    let missing: Vec<String> = config
        .required_for(service)
        .into_iter()
        .filter(|n| !has.is_some_and(|h| h.contains(n)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(GateError::MissingRequired {
            service: service.to_owned(),
            names: missing,
        })
    }
}

/// What one refresh did.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Services whose credential files changed: the ones to restart.
    pub changed: BTreeSet<String>,
    /// A drop-in changed: systemd must reload before starting anything.
    pub reload: bool,
    /// Parameters added, changed or removed by this fetch, whether or not a
    /// service receives them (`backup_password` is hostd's own).
    pub parameters: BTreeSet<String>,
}

pub struct Runtime<S> {
    source: Result<S, FetchError>,
    config: Arc<Config>,
    store: Store,
    tracker: Tracker,
    credentials: PathBuf,
    redis_auth_file: PathBuf,
    state: watch::Sender<SecretsState>,
}

impl<S: SecretSource + Sync> Runtime<S> {
    /// `source` is an error when the SDK could not even be set up (no
    /// region): every refresh then falls back like a failed fetch.
    pub fn new(
        config: Arc<Config>,
        source: Result<S, FetchError>,
        credentials: PathBuf,
    ) -> (Self, watch::Receiver<SecretsState>) {
        let store = match &config.secrets {
            Some(s) => Store::new(&s.store_dir.0, s.path.as_str()),
            None => Store::new(&config.state_dir, ""),
        };
        let tracker = match config.secrets {
            Some(_) => Tracker::load(&store),
            None => Tracker::default(),
        };
        let (state, rx) = watch::channel(SecretsState {
            configured: config.secrets.is_some(),
            ..SecretsState::default()
        });
        let runtime = Self {
            source,
            config,
            store,
            tracker,
            credentials,
            redis_auth_file: redis_auth::AUTH_FILE.into(),
            state,
        };
        (runtime, rx)
    }

    /// A new configuration in force: its `[secrets]` (another path or
    /// store reads that store's last good set) and its services (who gets
    /// what). The next refresh fetches and delivers by it.
    pub fn reconfigure(&mut self, config: Arc<Config>, source: Result<S, FetchError>) {
        let place = |c: &Config| {
            c.secrets
                .as_ref()
                .map(|s| (s.store_dir.0.clone(), s.path.as_str().to_owned()))
        };
        if place(&config) != place(&self.config) {
            self.store = match &config.secrets {
                Some(s) => Store::new(&s.store_dir.0, s.path.as_str()),
                None => Store::new(&config.state_dir, ""),
            };
            self.tracker = match config.secrets {
                Some(_) => Tracker::load(&self.store),
                None => Tracker::default(),
            };
        }
        self.state
            .send_modify(|s| s.configured = config.secrets.is_some());
        self.source = source;
        self.config = config;
    }

    /// Fetch (or fall back), deliver, publish. Without `[secrets]` it still
    /// delivers an empty set, which removes drop-ins a previous
    /// configuration left.
    pub async fn refresh(&mut self, now: SystemTime) -> Refreshed {
        let Some(secrets) = &self.config.secrets else {
            return self.deliver(&SecretSet::new(), None);
        };
        let required = secrets.required_all();
        // What Redis may still require: the password of the set in use
        // before this fetch, in memory or (after a restart) on disk.
        let previous = self
            .tracker
            .last_good()
            .and_then(|set| Wired::of(&self.config, set).redis_password);
        let outcome = fetch_with_fallback(
            &self.source,
            secrets.path.as_str(),
            &required,
            &self.store,
            &mut self.tracker,
            now,
        )
        .await;
        match outcome {
            Outcome::Fresh { set, changes, .. } => {
                tracing::info!(
                    count = set.len(),
                    changed = changes.all().len(),
                    "secrets fetched"
                );
                self.state.send_modify(|s| s.last_success = Some(now));
                let mut refreshed = self.deliver(&set, None);
                refreshed.parameters = changes.all().into_iter().map(str::to_owned).collect();
                self.apply_redis(previous.as_ref()).await;
                refreshed
            }
            Outcome::Stale { set, since, error } => {
                let message = hostd_api::error_chain(&error);
                tracing::warn!(
                    since = %humantime::format_rfc3339_seconds(since),
                    "secrets fetch failed; services keep the last good set: {message}"
                );
                let refreshed = self.deliver(&set, Some(message));
                self.apply_redis(previous.as_ref()).await;
                refreshed
            }
            Outcome::Unavailable { error } => {
                let message = hostd_api::error_chain(&error);
                tracing::error!(
                    "secrets fetch failed and no good set is stored; services that need secrets are not started: {message}"
                );
                self.publish(None, Listed::default(), Some(message));
                Refreshed::default()
            }
        }
    }

    /// Makes Redis require the delivered `redis_password` (see
    /// [`redis_auth`]); a failure becomes the published problem, which
    /// /health shows as degraded.
    async fn apply_redis(&self, previous: Option<&SecretValue>) {
        let Some(new) = self.state.borrow().wired.redis_password.clone() else {
            return;
        };
        let file = self.redis_auth_file.as_path();
        match redis_auth::apply(self.config.redis_address(), file, &new, previous).await {
            Ok(Applied::Set) => tracing::info!("Redis now requires the new redis_password"),
            Ok(Applied::NotRunning) => {
                tracing::info!("Redis is not running; it reads redis_password when it starts")
            }
            Ok(Applied::Unchanged) => {}
            Err(e) => {
                let message = format!(
                    "cannot apply redis_password: {}",
                    hostd_api::error_chain(&e)
                );
                tracing::error!("{message}");
                self.state.send_modify(|s| {
                    s.problem.get_or_insert(message);
                });
            }
        }
    }

    fn deliver(&mut self, set: &SecretSet, problem: Option<String>) -> Refreshed {
        let versions: BTreeMap<String, i64> = set
            .fingerprint()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        let modified: BTreeMap<String, SystemTime> = set
            .iter()
            .filter_map(|s| s.last_modified.map(|t| (s.name.clone(), t)))
            .collect();
        match deliver(
            &self.config,
            set,
            &self.credentials,
            &self.config.units.target_dir,
        ) {
            Ok(d) => {
                if !d.changed.is_empty() {
                    tracing::info!(services = ?d.changed, "delivered secrets as credentials");
                }
                let wired = Wired::of(&self.config, set);
                self.publish(
                    Some(d.services),
                    Listed {
                        versions,
                        modified,
                        wired,
                        known: known_values(set),
                    },
                    problem,
                );
                Refreshed {
                    changed: d.changed,
                    reload: d.drop_ins_changed,
                    parameters: BTreeSet::new(),
                }
            }
            Err(e) => {
                let message = delivery_message(&e);
                tracing::error!("{message}");
                let wired = Wired::default();
                self.publish(
                    None,
                    Listed {
                        versions,
                        modified,
                        wired,
                        known: known_values(set),
                    },
                    Some(message),
                );
                Refreshed::default()
            }
        }
    }

    fn publish(
        &self,
        delivered: Option<BTreeMap<String, BTreeSet<String>>>,
        listed: Listed,
        problem: Option<String>,
    ) {
        let stale_since = self.tracker.stale_since();
        self.state.send_modify(|s| {
            s.delivered = delivered;
            s.versions = listed.versions;
            s.modified = listed.modified;
            s.stale_since = stale_since;
            s.problem = problem;
            s.wired = listed.wired;
            s.known = listed.known;
        });
    }
}

/// Names, versions and dates of the set in use: what `secrets list` shows.
#[derive(Default)]
struct Listed {
    versions: BTreeMap<String, i64>,
    modified: BTreeMap<String, SystemTime>,
    wired: Wired,
    known: Arc<[SecretValue]>,
}

fn known_values(set: &SecretSet) -> Arc<[SecretValue]> {
    set.iter().map(|s| s.value.clone()).collect()
}

fn delivery_message(e: &DeliveryError) -> String {
    format!("cannot deliver secrets: {}", hostd_api::error_chain(e))
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
