//! Rotation: one task owns the [`Runtime`] and refreshes every
//! `secrets.refresh_interval` and whenever `hostctl secrets sync` asks, so
//! two refreshes never run at once. After a refresh it daemon-reloads when a
//! drop-in changed, then restarts, through the manager (rolling for
//! instances), only the services whose credentials changed and that hostd
//! keeps running. A failed fetch changes nothing: the runtime keeps the last
//! good set and publishes since when it is stale.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use hostd_api::time::rfc3339;
use hostd_api::{SecretInfo, SecretsList, SecretsSyncResult, ServiceAction};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Runtime, SecretSource, SecretsState};
use crate::config::{Config, CurrentConfig};
use crate::lifetime::Lifetime;
use crate::manager::{ManagerError, ManagerHandle};
use crate::systemd::{SystemdError, Units};

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("secrets are not configured on this host (no [secrets] section in hostd.toml)")]
    NotConfigured,
    #[error("the secrets task has stopped (hostd is shutting down)")]
    Gone,
}

impl crate::http::Refusal for RefreshError {
    fn http_status(&self) -> u16 {
        match self {
            Self::NotConfigured => 404,
            Self::Gone => 503,
        }
    }
}

/// What a refresh does to the host besides writing files: systemd and the
/// manager in hostd, a recorder in tests.
pub trait Apply: Send + Sync {
    fn reload(&self) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Whether hostd keeps `service` running (a stopped one gets its new
    /// secrets when it is next started).
    fn keeps_running(&self, service: &str) -> bool;
    fn restart(&self, service: &str) -> impl Future<Output = Result<(), ManagerError>> + Send;
}

/// The real thing: daemon-reload over D-Bus, restarts through the manager.
pub struct Live<U> {
    pub units: U,
    pub manager: ManagerHandle,
}

impl<U: Units> Apply for Live<U> {
    async fn reload(&self) -> Result<(), SystemdError> {
        self.units.reload().await
    }

    fn keeps_running(&self, service: &str) -> bool {
        self.manager.keeps_running(service)
    }

    async fn restart(&self, service: &str) -> Result<(), ManagerError> {
        self.manager
            .action(service.to_owned(), ServiceAction::Restart)
            .await
            .map(|_| ())
    }
}

type SyncReply = oneshot::Sender<SecretsSyncResult>;

enum Request {
    Sync(SyncReply),
    /// A new configuration: fetch and deliver by it now, restarting the
    /// services whose credentials changed except `skip` (the apply restarts
    /// those itself).
    Reconfigure {
        config: Arc<Config>,
        skip: BTreeSet<String>,
        reply: SyncReply,
    },
}

/// How the control API reaches the refresh task and what it publishes.
#[derive(Clone)]
pub struct SecretsHandle {
    tx: mpsc::Sender<Request>,
    config: CurrentConfig,
    state: watch::Receiver<SecretsState>,
}

impl SecretsHandle {
    /// Refresh now (after any refresh already running) and say what it did.
    pub async fn sync(&self) -> Result<SecretsSyncResult, RefreshError> {
        if self.config.get().secrets.is_none() {
            return Err(RefreshError::NotConfigured);
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Sync(reply))
            .await
            .map_err(|_| RefreshError::Gone)?;
        rx.await.map_err(|_| RefreshError::Gone)
    }

    /// Switches the task to `config` and refreshes by it (see
    /// [`Request::Reconfigure`]).
    pub async fn reconfigure(
        &self,
        config: Arc<Config>,
        skip: BTreeSet<String>,
    ) -> Result<SecretsSyncResult, RefreshError> {
        let (reply, rx) = oneshot::channel();
        let req = Request::Reconfigure {
            config,
            skip,
            reply,
        };
        self.tx.send(req).await.map_err(|_| RefreshError::Gone)?;
        rx.await.map_err(|_| RefreshError::Gone)
    }

    pub fn list(&self) -> Result<SecretsList, RefreshError> {
        list(&self.config.get(), &self.state.borrow())
    }

    /// A handle whose task is gone, over a given state.
    #[cfg(test)]
    pub fn detached(config: Arc<Config>, state: watch::Receiver<SecretsState>) -> Self {
        Self {
            tx: mpsc::channel(1).0,
            config: CurrentConfig::fixed(config),
            state,
        }
    }
}

/// Names, versions, dates and receiving services of the set in use.
pub fn list(config: &Config, state: &SecretsState) -> Result<SecretsList, RefreshError> {
    let secrets = config.secrets.as_ref().ok_or(RefreshError::NotConfigured)?;
    let mut receivers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (service, names) in state.delivered.iter().flatten() {
        for name in names {
            receivers.entry(name).or_default().insert(service);
        }
    }
    let parameters = state
        .versions
        .iter()
        .map(|(name, version)| SecretInfo {
            name: name.clone(),
            version: *version,
            last_modified: state.modified.get(name).copied().map(rfc3339),
            services: receivers
                .get(name.as_str())
                .map(|s| s.iter().map(|s| (*s).to_owned()).collect())
                .unwrap_or_default(),
        })
        .collect();
    Ok(SecretsList {
        path: secrets.path.as_str().to_owned(),
        last_success: state.last_success.map(rfc3339),
        stale_since: state.stale_since.map(rfc3339),
        parameters,
    })
}

/// How often, and whether, the task refreshes on its own.
fn period(config: &Config) -> (std::time::Duration, bool) {
    let every = config
        .secrets
        .as_ref()
        .map(|s| s.refresh_interval.0)
        .unwrap_or(std::time::Duration::from_secs(3600));
    (every, config.secrets.is_some())
}

/// Starts the task. Without `[secrets]` it never refreshes on its own (the
/// startup refresh already cleared what an earlier configuration left).
/// `source_for` makes the SSM client of a new configuration's `[secrets]`.
pub fn spawn<S, A, M, F>(
    mut runtime: Runtime<S>,
    state: watch::Receiver<SecretsState>,
    config: CurrentConfig,
    apply: A,
    source_for: M,
    lifetime: &Lifetime,
) -> SecretsHandle
where
    S: SecretSource + Send + Sync + 'static,
    A: Apply + 'static,
    M: Fn(Arc<Config>) -> F + Send + 'static,
    F: Future<Output = Result<S, super::FetchError>> + Send,
{
    let (tx, mut rx) = mpsc::channel::<Request>(8);
    let (mut every, mut periodic) = period(&config.get());
    let handle = SecretsHandle {
        tx,
        config,
        state: state.clone(),
    };
    let ending = lifetime.clone();
    lifetime.spawn("secrets refresh", async move {
        // hostd refreshed once before starting services: the first periodic
        // one is due a full interval later.
        let mut next = tokio::time::Instant::now() + jittered(every);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next), if periodic => {
                    refresh_once(&mut runtime, &state, &apply).await;
                }
                req = rx.recv() => match req {
                    Some(Request::Sync(reply)) => {
                        let result = refresh_once(&mut runtime, &state, &apply).await;
                        let _ = reply.send(result);
                    }
                    Some(Request::Reconfigure { config, skip, reply }) => {
                        (every, periodic) = period(&config);
                        let source = source_for(Arc::clone(&config)).await;
                        runtime.reconfigure(config, source);
                        let result = refresh_skipping(&mut runtime, &state, &apply, &skip).await;
                        let _ = reply.send(result);
                    }
                    None => return,
                },
                () = ending.ending() => return,
            }
            // Just fetched: the next periodic one can wait.
            next = tokio::time::Instant::now() + jittered(every);
        }
    });
    handle
}

/// `every` plus up to a tenth more, at random: hosts started together (a
/// fleet launched from one AMI) drift apart instead of asking SSM in the
/// same second for ever.
fn jittered(every: std::time::Duration) -> std::time::Duration {
    every + crate::random_delay(every / 10)
}

/// One refresh and what follows from it.
pub async fn refresh_once<S, A>(
    runtime: &mut Runtime<S>,
    state: &watch::Receiver<SecretsState>,
    apply: &A,
) -> SecretsSyncResult
where
    S: SecretSource + Sync,
    A: Apply,
{
    refresh_skipping(runtime, state, apply, &BTreeSet::new()).await
}

/// The same, restarting none of `skip`.
async fn refresh_skipping<S, A>(
    runtime: &mut Runtime<S>,
    state: &watch::Receiver<SecretsState>,
    apply: &A,
    skip: &BTreeSet<String>,
) -> SecretsSyncResult
where
    S: SecretSource + Sync,
    A: Apply,
{
    let now = SystemTime::now();
    let refreshed = runtime.refresh(now).await;
    let (fetched, stale_since, problem) = {
        let st = state.borrow();
        (
            st.last_success == Some(now),
            st.stale_since.map(rfc3339),
            st.problem.clone(),
        )
    };
    let mut errors: Vec<String> = problem.into_iter().collect();
    let mut restarted = Vec::new();
    let reloaded = if refreshed.reload {
        match apply.reload().await {
            Ok(()) => true,
            Err(e) => {
                // Restarting without the new drop-ins would hand out the old
                // credential list: better to say so and leave them running.
                errors.push(format!(
                    "systemd daemon-reload failed: {}",
                    hostd_api::error_chain(&e)
                ));
                false
            }
        }
    } else {
        true
    };
    for service in refreshed.changed.iter().filter(|_| reloaded) {
        if skip.contains(service) {
            continue;
        }
        if !apply.keeps_running(service) {
            tracing::info!(
                service,
                "secrets changed for a stopped service; it gets them when started"
            );
            continue;
        }
        tracing::info!(service, "secrets changed; restarting");
        match apply.restart(service).await {
            Ok(()) => restarted.push(service.clone()),
            Err(e) => errors.push(format!(
                "restarting {service} failed: {}",
                hostd_api::error_chain(&e)
            )),
        }
    }
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    if let Some(e) = &error {
        tracing::warn!("secrets refresh: {e}");
    } else if refreshed.changed.is_empty() {
        tracing::debug!("secrets refreshed; nothing changed");
    } else {
        tracing::info!(restarted = ?restarted, "secrets rotated");
    }
    SecretsSyncResult {
        fetched,
        stale_since,
        changed: refreshed.changed.into_iter().collect(),
        parameters: refreshed.parameters.into_iter().collect(),
        restarted,
        error,
    }
}

#[cfg(test)]
#[path = "refresh_tests.rs"]
mod tests;
