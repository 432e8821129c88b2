//! `sandbox down` and `sandbox list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use super::state::{Layout, SandboxState, validate_name};
use super::{SandboxError, aws, imds, net, rootfs};

/// How long an orderly container shutdown may take before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(45);

pub(crate) async fn down_one(layout: &Layout, name: &str) -> Result<ExitCode, SandboxError> {
    validate_name(name)?;
    let Some(state) = layout.load(name)? else {
        return Err(unknown(layout, name)?);
    };
    teardown(layout, &state).await?;
    release_shared(layout).await?;
    Ok(ExitCode::SUCCESS)
}

/// The error for a name that is not a sandbox, listing the ones there are.
pub(crate) fn unknown(layout: &Layout, name: &str) -> Result<SandboxError, SandboxError> {
    let names: Vec<String> = layout.all()?.into_iter().map(|s| s.name).collect();
    Ok(SandboxError::Unknown {
        name: name.to_owned(),
        running: if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        },
    })
}

/// Every sandbox, then the AWS stand-in and the bridge, whatever is left.
pub(crate) async fn down_all(layout: &Layout) -> Result<ExitCode, SandboxError> {
    let mut first_error = None;
    for state in layout.all()? {
        if let Err(e) = teardown(layout, &state).await {
            warn!("sandbox {}: {e}", state.name);
            first_error.get_or_insert(e);
        }
    }
    let _guard = layout.lock(".lock").await?;
    if layout.all()?.is_empty() {
        aws::stop(layout).await?;
    }
    first_error.map_or(Ok(ExitCode::SUCCESS), Err)
}

/// Stop one sandbox and remove everything it used (not the shared parts).
async fn teardown(layout: &Layout, s: &SandboxState) -> Result<(), SandboxError> {
    info!("stopping sandbox {}", s.name);
    if let Some(p) = s.nspawn {
        p.terminate(&format!("sandbox {}", s.name), STOP_GRACE)
            .await;
    }
    if let Some(p) = s.imds {
        imds::stop(p).await;
    }
    clean_nspawn_leftovers(&s.name, &layout.root(&s.name));
    rootfs::umount_below(&layout.dir(&s.name)).await?;
    net::delete_namespace(&s.name).await?;
    rootfs::remove_tree(&layout.dir(&s.name)).await?;
    info!("sandbox {} removed", s.name);
    Ok(())
}

/// When no sandbox remains, stop moto and delete its namespace and the bridge.
pub(crate) async fn release_shared(layout: &Layout) -> Result<(), SandboxError> {
    let _guard = layout.lock(".lock").await?;
    if layout.all()?.is_empty() {
        info!("last sandbox gone: stopping the AWS stand-in");
        aws::stop(layout).await?;
    }
    Ok(())
}

/// systemd-nspawn leaves per-machine directories under /run/systemd/nspawn,
/// and an image lock named after the root directory's device and inode when
/// it is killed. Call while `root` is still mounted.
pub(crate) fn clean_nspawn_leftovers(name: &str, root: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(root) {
        let lock = PathBuf::from(format!(
            "/run/systemd/nspawn/locks/inode-{}:{}",
            m.dev(),
            m.ino()
        ));
        if let Err(e) = std::fs::remove_file(&lock)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!("cannot remove {}: {e}", lock.display());
        }
    }
    let machine = net::netns(name);
    for sub in ["propagate", "unix-export", "incoming"] {
        let p = PathBuf::from("/run/systemd/nspawn")
            .join(sub)
            .join(&machine);
        if p.exists()
            && rootfs::mounts_below(&p).is_empty()
            && let Err(e) = std::fs::remove_dir_all(&p)
        {
            warn!("cannot remove {}: {e}", p.display());
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct ListEntry {
    pub name: String,
    pub address: String,
    pub pid: Option<i32>,
    pub alive: bool,
    pub hostctl_toml: PathBuf,
}

pub(crate) fn list(layout: &Layout) -> Result<Vec<ListEntry>, SandboxError> {
    let entries: Vec<ListEntry> = layout
        .all()?
        .into_iter()
        .map(|s| ListEntry {
            alive: s.is_running(),
            pid: s.nspawn.map(|p| p.pid),
            hostctl_toml: layout.hostctl_toml(&s.name),
            address: s.address,
            name: s.name,
        })
        .collect();
    Ok(entries)
}
