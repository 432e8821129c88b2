//! `hostctl upgrade-hostd`: a new hostd build, uploaded as an artifact like
//! a release, is checked (its digest, and that it runs here: `--version`),
//! installed beside the running binary and renamed over it, then hostd
//! asks systemd to restart its own unit. Managed services are separate
//! units and keep running; the new hostd takes them over as any restart
//! does. An operation of the operations task, held until this hostd
//! stops, so no deploy or restore starts in between or is cut short.

pub mod http;

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hostd_api::{UpgradeAnswer, UpgradeRequest};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::deploy::artifacts::hex;
use crate::deploy::{ArtifactError, ArtifactStore};
use crate::host::HostHandle;
use crate::lifetime::Lifetime;
use crate::ops::{Holder, Operation, OpsError, OpsHandle};
use crate::systemd::Systemd;
use crate::units::front::FRONT_SERVICE;

/// hostd's own unit, as units/hostd.service installs it.
pub const UNIT: &str = "hostd.service";
/// Larger than any hostd build; a bound on what an upload can write.
const MAX_BINARY: u64 = 512 * 1024 * 1024;
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
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
    #[error("the new build does not run on this host ({0}); hostd is unchanged")]
    Broken(String),
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
            Self::NoBinary | Self::Digest { .. } | Self::Broken(_) => 422,
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
            let installed = install(&this.artifacts, &req)
                .await
                .map(|version| UpgradeAnswer {
                    previous_build: this.host.build(),
                    build: req.build.clone(),
                    version,
                });
            let ok = installed.is_ok();
            let _ = reply.send(installed);
            if ok {
                this.restart().await;
            }
        });
        self.ops.submit(op).await?;
        answer.await.map_err(|_| UpgradeError::Worker)?
    }

    async fn restart(&self) {
        tracing::warn!("new hostd build installed; restarting on it");
        // Time for the answer to reach hostctl.
        tokio::time::sleep(RESTART_DELAY).await;
        // The front runs from the same binary. systemd holds its sockets,
        // so its restart queues new connections while the old one drains.
        if let Err(e) = self.systemd.try_restart_unit_nowait(FRONT_SERVICE).await {
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

/// Unpacks, checks and renames the new binary over the running one.
/// Returns what its `--version` printed.
async fn install(store: &ArtifactStore, req: &UpgradeRequest) -> Result<String, UpgradeError> {
    let exe = std::env::current_exe().map_err(|source| UpgradeError::Install {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let staged = dir.join(".hostd.new");
    let archive = store.open(&req.artifact)?;
    let (to, expected) = (staged.clone(), req.build.clone());
    tokio::task::spawn_blocking(move || extract(archive, &to, &expected))
        .await
        .map_err(|_| UpgradeError::Worker)??;
    let version = match runs(&staged).await {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
    };
    let install_err = |source| UpgradeError::Install {
        path: exe.clone(),
        source,
    };
    // The build being replaced stays beside it as `hostd.previous`: if the
    // new one cannot run as a daemon (it passed `--version` only), an
    // operator puts it back with one `mv` and a restart.
    let previous = dir.join("hostd.previous");
    match std::fs::remove_file(&previous) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(install_err(e)),
    }
    std::fs::hard_link(&exe, &previous).map_err(install_err)?;
    std::fs::rename(&staged, &exe).map_err(install_err)?;
    // The rename is durable only once the directory is synced.
    crate::fsutil::sync_dir(&dir).map_err(install_err)?;
    Ok(version)
}

/// Writes the tar's `hostd` to `to` (0755), checking its sha256.
fn extract(archive: impl Read, to: &Path, expected: &str) -> Result<(), UpgradeError> {
    let io = |source| UpgradeError::Install {
        path: to.to_owned(),
        source,
    };
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.into_owned();
        let named = path.components().map(|c| c.as_os_str()).eq(["hostd"]);
        if !named || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(to)
            .map_err(io)?;
        // A leftover file keeps its old mode through open(): set it.
        out.set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(io)?;
        let mut hash = Sha256::new();
        let mut limited = entry.take(MAX_BINARY);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = limited.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io)?;
        }
        out.sync_all().map_err(io)?;
        let actual = hex(&hash.finalize());
        if actual != expected {
            let _ = std::fs::remove_file(to);
            return Err(UpgradeError::Digest {
                expected: expected.to_owned(),
                actual,
            });
        }
        return Ok(());
    }
    Err(UpgradeError::NoBinary)
}

/// The new build must start here and name itself: `hostd --version`.
async fn runs(binary: &Path) -> Result<String, UpgradeError> {
    let run = tokio::process::Command::new(binary)
        .arg("--version")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(VERSION_TIMEOUT, run).await {
        Err(_) => {
            return Err(UpgradeError::Broken(format!(
                "`--version` ran over {VERSION_TIMEOUT:?}"
            )));
        }
        Ok(Err(e)) => return Err(UpgradeError::Broken(e.to_string())),
        Ok(Ok(out)) => out,
    };
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !text.starts_with("hostd ") {
        let first = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        return Err(UpgradeError::Broken(format!(
            "`--version` exited {} printing `{text}` {first}",
            out.status
        )));
    }
    Ok(text)
}
