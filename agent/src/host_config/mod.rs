//! The host's configuration as the operator's repository declares it:
//! hostd plans a new hostd.toml against the one in force ([`plan`]),
//! applies it in place as an operation (no restart of hostd, services
//! whose settings did not change untouched), waits for the host to be
//! healthy and otherwise puts the previous configuration back by itself
//! ([`apply`]). Every apply goes into a ledger. `systemctl reload hostd`
//! (SIGHUP) applies the file as it is on the host the same way.

pub mod apply;
pub mod file;
pub mod http;
pub mod plan;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostd_api::{ApplyRecord, ConfigPlan, HostConfig};
use tokio::sync::watch;

use crate::backup::BackupHandle;
use crate::config::{Config, ConfigError};
use crate::health::Snapshot;
use crate::jobs::JobsHandle;
use crate::lifetime::Lifetime;
use crate::manager::ManagerHandle;
use crate::ops::OpsHandle;
use crate::secrets::SecretsHandle;
use crate::state_file::JsonLog;
use crate::systemd::Systemd;

/// How long a new configuration may take to come up healthy unless the
/// request says otherwise.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest an apply may ask for.
pub const MAX_HEALTH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Applies kept in the ledger.
const LEDGER_KEEP: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HostConfigError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("the configuration is {bytes} bytes; hostd takes at most {max}", max = hostd_api::host_config::MAX_CONFIG_BYTES)]
    TooLarge { bytes: usize },
    #[error("`source` must be a relative path of at most 256 printable characters")]
    BadSource,
    #[error(
        "hostd reads {} only when it starts: apply this configuration by writing it to the host and restarting hostd (`systemctl restart hostd`, which stops no service)",
        .keys.join(", ")
    )]
    NeedsRestart { keys: Vec<String> },
    #[error(
        "applying a configuration needs root on the host, and {caller} is not root; hostctl connects with `sudo -n hostd dial-stdio` for it (hostctl.toml ssh.root_hostd_path)"
    )]
    NotRoot { caller: String },
    #[error(transparent)]
    Lock(#[from] crate::ops::OpsError),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] crate::state_file::StateFileError),
}

impl crate::http::Refusal for HostConfigError {
    fn http_status(&self) -> u16 {
        match self {
            Self::Invalid(_)
            | Self::TooLarge { .. }
            | Self::BadSource
            | Self::NeedsRestart { .. } => 422,
            Self::NotRoot { .. } => 403,
            Self::Lock(e) => e.http_status(),
            Self::Write { .. } | Self::Ledger(_) => 500,
        }
    }
}

/// A configuration and the text it was read from.
#[derive(Clone)]
pub struct Loaded {
    /// As declared: without the header hostd writes above it.
    pub text: String,
    /// The operator's path, when hostctl applied it.
    pub source: Option<String>,
    pub config: Arc<Config>,
}

impl Loaded {
    /// Checks a text sent over the control API, naming `source` in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, HostConfigError> {
        if text.len() > hostd_api::host_config::MAX_CONFIG_BYTES {
            return Err(HostConfigError::TooLarge { bytes: text.len() });
        }
        if !file::is_plain_source(source) {
            return Err(HostConfigError::BadSource);
        }
        let config = Config::parse(Path::new(source), text)?;
        Ok(Self {
            text: text.to_owned(),
            source: Some(source.to_owned()),
            config: Arc::new(config),
        })
    }
}

/// What applies work with.
pub struct Deps {
    /// The file on the host (`/etc/hostd/hostd.toml`).
    pub path: PathBuf,
    pub running: Loaded,
    /// Switches [`crate::config::CurrentConfig`] for everyone who reads it.
    pub switch: watch::Sender<Arc<Config>>,
    pub systemd: Systemd,
    pub manager: ManagerHandle,
    pub jobs: JobsHandle,
    pub secrets: SecretsHandle,
    pub backup: BackupHandle,
    pub ops: OpsHandle,
    pub snapshots: watch::Receiver<Snapshot>,
    /// Where the last apply is published (see [`last_apply`]).
    pub last_apply: watch::Sender<Option<ApplyRecord>>,
}

/// The ledger's last entry, published for `hostctl status` from the start.
pub fn last_apply(state_dir: &Path) -> watch::Sender<Option<ApplyRecord>> {
    let last = ledger_file(state_dir).read().ok().and_then(|mut l| l.pop());
    watch::channel(last).0
}

fn ledger_file(state_dir: &Path) -> JsonLog<ApplyRecord> {
    JsonLog::new(state_dir.join("applies.jsonl"), "apply ledger", 0o640)
}

#[derive(Clone)]
pub struct ConfigHandle {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    running: Mutex<Loaded>,
    switch: watch::Sender<Arc<Config>>,
    systemd: Systemd,
    manager: ManagerHandle,
    jobs: JobsHandle,
    secrets: SecretsHandle,
    backup: BackupHandle,
    ops: OpsHandle,
    snapshots: watch::Receiver<Snapshot>,
    ledger: JsonLog<ApplyRecord>,
    last_apply: watch::Sender<Option<ApplyRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// No task of its own until SIGHUP: applies run in the operations task.
pub fn spawn(deps: Deps, lifetime: &Lifetime) -> ConfigHandle {
    let state_dir = deps.running.config.state_dir.clone();
    let handle = ConfigHandle {
        inner: Arc::new(Inner {
            path: deps.path,
            running: Mutex::new(deps.running),
            switch: deps.switch,
            systemd: deps.systemd,
            manager: deps.manager,
            jobs: deps.jobs,
            secrets: deps.secrets,
            backup: deps.backup,
            ops: deps.ops,
            snapshots: deps.snapshots,
            ledger: ledger_file(&state_dir),
            last_apply: deps.last_apply,
        }),
    };
    let on_hangup = handle.clone();
    let ending = lifetime.clone();
    lifetime.spawn("reload on SIGHUP", async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::error!("cannot listen for SIGHUP; `systemctl reload hostd` does nothing");
            return;
        };
        loop {
            tokio::select! {
                Some(()) = hangups.recv() => on_hangup.reload_from_file().await,
                () = ending.ending() => return,
            }
        }
    });
    handle
}

impl ConfigHandle {
    pub fn running(&self) -> Loaded {
        lock(&self.inner.running).clone()
    }

    /// `GET /v1/config`.
    pub fn current(&self) -> HostConfig {
        let running = self.running();
        HostConfig {
            digest: hostd_api::host_config::digest(&running.text),
            text: running.text,
            source: running.source,
            last_apply: self.inner.last_apply.borrow().clone(),
        }
    }

    /// The ledger, oldest first.
    pub fn ledger(&self) -> Vec<ApplyRecord> {
        match self.inner.ledger.read() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("{}", hostd_api::error_chain(&e));
                Vec::new()
            }
        }
    }

    /// The dry run: what applying `new` would do.
    pub fn plan(&self, new: &Loaded) -> ConfigPlan {
        self.planned(&self.running(), new).plan
    }

    fn planned(&self, from: &Loaded, to: &Loaded) -> plan::Planned {
        let on_disk = plan::generated_units(&from.config.units.target_dir);
        let source = to.source.as_deref().unwrap_or("hostd.toml");
        let mut planned = plan::plan(
            &from.text,
            &from.config,
            &to.text,
            &to.config,
            source,
            &on_disk,
        );
        if !planned.changes.at_start.is_empty() {
            planned.plan.actions.push(hostd_api::PlanAction {
                kind: hostd_api::ActionKind::Reconfigure,
                target: "hostd".into(),
                reason: format!(
                    "needs a restart of hostd for {}",
                    planned.changes.at_start.join(", ")
                ),
            });
        }
        planned
    }

    fn record(&self, record: &ApplyRecord) {
        self.inner.last_apply.send_replace(Some(record.clone()));
        let ledger = &self.inner.ledger;
        if let Err(e) = ledger.append(record) {
            tracing::error!("{}", hostd_api::error_chain(&e));
        }
        if let Ok(entries) = ledger.read()
            && entries.len() > 2 * LEDGER_KEEP
        {
            let keep = &entries[entries.len() - LEDGER_KEEP..];
            if let Err(e) = ledger.rewrite(keep) {
                tracing::warn!("{}", hostd_api::error_chain(&e));
            }
        }
    }
}
