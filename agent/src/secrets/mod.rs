//! Secrets from SSM Parameter Store (issue 4): fetched by prefix, checked
//! against the required names, kept on disk as the last good set, and
//! served from there while SSM is unreachable.
//!
//! No value is ever formatted: [`SecretValue`] has no `Display` and a
//! redacting `Debug`; errors name prefixes and parameters only.

pub mod compose;
pub mod delivery;
pub mod http;
pub mod redis_auth;
pub mod refresh;
pub mod runtime;
mod set;
mod source;
mod ssm;
mod store;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

pub use refresh::{RefreshError, SecretsHandle};
pub use runtime::{GateError, Refreshed, Runtime, SecretsState, Wired, gate};
pub use set::{Changes, Secret, SecretSet, SecretValue, relative_name};
pub use source::{FetchError, SecretSource};
pub use ssm::SsmSource;
pub use store::{Store, StoreError};

use crate::config::{Config, ParameterName};

/// The secrets as delivered before any service starts, and the runtime
/// that keeps them fresh once [`refresh::spawn`] takes it over.
pub struct Prepared {
    pub runtime: Runtime<SsmSource>,
    pub state: watch::Receiver<SecretsState>,
    /// A drop-in changed: systemd must reload before services start.
    pub reload: bool,
}

/// Fetches once and delivers credential files and drop-ins (or closes the
/// start gate), before the manager brings services up. Without
/// `[secrets]` it fetches nothing (the source is never asked) and only
/// clears drop-ins an earlier configuration left.
pub async fn prepare(config: &Arc<Config>) -> Prepared {
    let source = source_for(Arc::clone(config)).await;
    let (mut runtime, state) = Runtime::new(
        Arc::clone(config),
        source,
        delivery::CREDENTIALS_ROOT.into(),
    );
    let delivered = runtime.refresh(SystemTime::now()).await;
    Prepared {
        runtime,
        state,
        reload: delivered.reload,
    }
}

/// The SSM client of `config`'s `[secrets]`; an error without one (every
/// refresh then delivers the empty set).
pub async fn source_for(config: Arc<Config>) -> Result<SsmSource, FetchError> {
    match &config.secrets {
        Some(s) => SsmSource::from_config(s).await,
        None => Err(FetchError::Unreachable {
            prefix: String::new(),
            detail: "no [secrets] section".to_owned(),
        }),
    }
}

/// What the last fetch left us with.
#[derive(Debug)]
pub enum Outcome {
    /// Fetched now. `changes` is against the previous good set (everything
    /// is `added` the first time).
    Fresh {
        set: SecretSet,
        changes: Changes,
        /// The set could not be persisted; it is used anyway, and saving is
        /// tried again after the next fetch.
        save_error: Option<StoreError>,
    },
    /// The fetch failed; the last good set stays in use.
    Stale {
        set: SecretSet,
        since: SystemTime,
        error: FetchError,
    },
    /// The fetch failed and no good set is known (first boot during an
    /// outage): services that need secrets cannot be given them.
    Unavailable { error: FetchError },
}

/// The last good set and since when it has been stale. Pure bookkeeping:
/// the disk is only touched by [`fetch_with_fallback`] through a [`Store`].
#[derive(Debug, Default)]
pub struct Tracker {
    last_good: Option<SecretSet>,
    /// First failed fetch after the last success.
    stale_since: Option<SystemTime>,
    /// The last good set is not on disk yet.
    unsaved: bool,
}

impl Tracker {
    /// Start from what the store holds. An unreadable store is logged and
    /// treated as empty: SSM, when reachable, gives a fresh set anyway.
    pub fn load(store: &Store) -> Tracker {
        match store.load() {
            Ok(last_good) => {
                if let Some(set) = &last_good {
                    tracing::info!(count = set.len(), "loaded the last good secrets from disk");
                }
                Tracker {
                    last_good,
                    ..Tracker::default()
                }
            }
            Err(e) => {
                tracing::warn!("{}", hostd_api::error_chain(&e));
                Tracker::default()
            }
        }
    }

    pub fn last_good(&self) -> Option<&SecretSet> {
        self.last_good.as_ref()
    }

    pub fn stale_since(&self) -> Option<SystemTime> {
        self.stale_since
    }

    /// For /health's `degraded`: "secrets stale since T", None when fresh.
    pub fn stale_message(&self) -> Option<String> {
        self.stale_since.map(|t| {
            format!(
                "secrets stale since {}",
                humantime::format_rfc3339_seconds(t)
            )
        })
    }

    fn succeeded(&mut self, set: SecretSet) -> Changes {
        let changes = match &self.last_good {
            Some(old) => set.changes_since(old),
            None => set.changes_since(&SecretSet::new()),
        };
        if !changes.is_empty() || self.last_good.is_none() {
            self.unsaved = true;
        }
        self.last_good = Some(set);
        self.stale_since = None;
        changes
    }

    fn failed(&mut self, now: SystemTime) -> SystemTime {
        *self.stale_since.get_or_insert(now)
    }
}

/// The required names `set` lacks, as the error that names them.
pub fn check_required(
    prefix: &str,
    set: &SecretSet,
    required: &[ParameterName],
) -> Result<(), FetchError> {
    let missing = set.missing(required);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(FetchError::MissingRequired {
            prefix: prefix.to_owned(),
            names: missing.into_iter().map(str::to_owned).collect(),
        })
    }
}

/// Fetch; on success check the required names, persist when the set
/// changed and return it fresh; on any failure (a missing required name
/// included: a set without it must not replace a good one) fall back to the
/// last good set and record since when it is stale.
pub async fn fetch_with_fallback<S: SecretSource>(
    source: &S,
    prefix: &str,
    required: &[ParameterName],
    store: &Store,
    tracker: &mut Tracker,
    now: SystemTime,
) -> Outcome {
    let fetched = source
        .fetch()
        .await
        .and_then(|set| check_required(prefix, &set, required).map(|()| set));
    match fetched {
        Ok(set) => {
            let changes = tracker.succeeded(set.clone());
            let save_error = if tracker.unsaved {
                match store.save(&set) {
                    Ok(()) => {
                        tracker.unsaved = false;
                        None
                    }
                    Err(e) => {
                        tracing::warn!("{}", hostd_api::error_chain(&e));
                        Some(e)
                    }
                }
            } else {
                None
            };
            Outcome::Fresh {
                set,
                changes,
                save_error,
            }
        }
        Err(error) => {
            let since = tracker.failed(now);
            match &tracker.last_good {
                Some(set) => Outcome::Stale {
                    set: set.clone(),
                    since,
                    error,
                },
                None => Outcome::Unavailable { error },
            }
        }
    }
}

#[cfg(test)]
mod tests;
