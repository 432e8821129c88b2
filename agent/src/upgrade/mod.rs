//! `hostctl upgrade-hostd`: a new hostd build (with the front's binary,
//! `hostd-front`, when hostctl found one beside it), uploaded as an
//! artifact like a release, is checked (its digest, and that each binary
//! runs here: `--version`), installed beside the running ones and renamed
//! over them ([`install`]), then hostd asks systemd to restart the front
//! (when it got a new build) and its own unit. Managed services are separate
//! units and keep running; the new hostd takes them over as any restart
//! does. An operation of the operations task, held until this hostd
//! stops, so no deploy or restore starts in between or is cut short.

pub mod http;
mod install;

use std::path::PathBuf;
use std::time::Duration;

use hostd_api::{UpgradeAnswer, UpgradeRequest};
use tokio::sync::oneshot;

use crate::deploy::{ArtifactError, ArtifactStore};
use crate::host::HostHandle;
use crate::lifetime::Lifetime;
use crate::ops::{Holder, Operation, OpsError, OpsHandle};
use crate::systemd::Systemd;
use crate::units::front::FRONT_SERVICE;

/// hostd's own unit, as units/hostd.service installs it.
pub const UNIT: &str = "hostd.service";
/// Time for the answer to reach hostctl before systemd stops this process
/// (hostctl waits for the new build in `status` either way).
const RESTART_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("the artifact holds no regular file `hostd` at its top")]
    NoBinary,
    #[error("the binary in the artifact is {actual}, not the build {expected} asked for")]
    Digest { expected: String, actual: String },
    #[error("the new {program} does not run on this host ({detail}); hostd is unchanged")]
    Broken {
        program: &'static str,
        detail: String,
    },
    #[error("cannot install the new build at {}", path.display())]
    Install {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "an upgrade puts a new program into root's hands, so it needs root on the host, and {caller} is not root; hostctl connects with `sudo -n hostd dial-stdio` for it (hostctl.toml ssh.root_hostd_path)"
    )]
    NotRoot { caller: String },
    #[error(transparent)]
    Lock(#[from] OpsError),
    #[error("the upgrade thread failed")]
    Worker,
}

impl crate::http::Refusal for UpgradeError {
    fn http_status(&self) -> u16 {
        match self {
            Self::Artifact(e) => e.http_status(),
            Self::NoBinary | Self::Digest { .. } | Self::Broken { .. } => 422,
            Self::NotRoot { .. } => 403,
            Self::Lock(e) => e.http_status(),
            Self::Install { .. } | Self::Worker => 500,
        }
    }
}

/// What an upgrade works with.
#[derive(Clone)]
pub struct Upgrader {
    pub ops: OpsHandle,
    pub artifacts: ArtifactStore,
    pub host: HostHandle,
    pub systemd: Systemd,
    pub lifetime: Lifetime,
}

impl Upgrader {
    /// Installs the build as an operation and answers once it is in place
    /// (or refused); hostd restarts on it shortly after, still holding the
    /// operation so nothing starts in between.
    pub async fn upgrade(&self, req: UpgradeRequest) -> Result<UpgradeAnswer, UpgradeError> {
        let (reply, answer) = oneshot::channel();
        let this = self.clone();
        let holder = Holder::new("upgrade hostd", &req.requested_by);
        let op = Operation::new(holder, Duration::ZERO, async move {
            let installed = install::install(&this.artifacts, &req).await;
            let front = installed.as_ref().is_ok_and(|i| i.front);
            let answer = installed.map(|i| UpgradeAnswer {
                previous_build: this.host.build(),
                build: req.build.clone(),
                version: i.version,
            });
            let ok = answer.is_ok();
            let _ = reply.send(answer);
            if ok {
                this.restart(front).await;
            }
        });
        self.ops.submit(op).await?;
        answer.await.map_err(|_| UpgradeError::Worker)?
    }

    async fn restart(&self, front: bool) {
        tracing::warn!("new hostd build installed; restarting on it");
        // Time for the answer to reach hostctl.
        tokio::time::sleep(RESTART_DELAY).await;
        // systemd holds the front's sockets, so its restart queues new
        // connections while the old one drains.
        if front && let Err(e) = self.systemd.try_restart_unit_nowait(FRONT_SERVICE).await {
            tracing::error!(
                "cannot ask systemd to restart {FRONT_SERVICE}: {e}; it runs the new build from its next start"
            );
        }
        match self.systemd.restart_unit_nowait(UNIT).await {
            // Held until systemd stops this process.
            Ok(()) => self.lifetime.ending().await,
            Err(e) => tracing::error!(
                "cannot ask systemd to restart {UNIT}: {e}; the new build runs from the next start"
            ),
        }
    }
}
