//! Putting a new build in place: the artifact's `hostd` (its sha256 must be
//! the build asked for) and, when present, `hostd-front` are written beside
//! the running binaries, must each answer `--version` here, and are then
//! renamed over them. The builds replaced stay beside them as
//! `*.previous`: if a new one cannot run as a daemon (it passed
//! `--version` only), an operator puts it back with one `mv` and a restart.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hostd_api::{FRONT_BINARY, UpgradeRequest};
use sha2::{Digest, Sha256};

use super::UpgradeError;
use crate::deploy::ArtifactStore;
use crate::deploy::artifacts::hex;

/// Larger than any hostd build; a bound on what an upload can write.
const MAX_BINARY: u64 = 512 * 1024 * 1024;
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// What an upgrade put in place.
pub struct Installed {
    /// What the new hostd's `--version` printed.
    pub version: String,
    /// A new front binary came with it.
    pub front: bool,
}

pub async fn install(
    store: &ArtifactStore,
    req: &UpgradeRequest,
) -> Result<Installed, UpgradeError> {
    let exe = std::env::current_exe().map_err(|source| UpgradeError::Install {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let staged = Staged {
        hostd: dir.join(".hostd.new"),
        front: dir.join(".hostd-front.new"),
    };
    let archive = store.open(&req.artifact)?;
    let (to, expected) = (staged.clone(), req.build.clone());
    let front = tokio::task::spawn_blocking(move || extract(archive, &to, &expected))
        .await
        .map_err(|_| UpgradeError::Worker)?;
    let checked = match front {
        Ok(front) => check(&staged, front).await.map(|v| (v, front)),
        Err(e) => Err(e),
    };
    let (version, front) = match checked {
        Ok(c) => c,
        Err(e) => {
            staged.remove();
            return Err(e);
        }
    };
    put_in_place(&staged.hostd, &exe)?;
    if front {
        put_in_place(&staged.front, &dir.join(FRONT_BINARY))?;
    }
    // The renames are durable only once the directory is synced.
    crate::fsutil::sync_dir(&dir).map_err(|source| UpgradeError::Install { path: dir, source })?;
    Ok(Installed { version, front })
}

#[derive(Clone)]
struct Staged {
    hostd: PathBuf,
    front: PathBuf,
}

impl Staged {
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.hostd);
        let _ = std::fs::remove_file(&self.front);
    }
}

async fn check(staged: &Staged, front: bool) -> Result<String, UpgradeError> {
    let version = runs(&staged.hostd, "hostd").await?;
    if front {
        runs(&staged.front, FRONT_BINARY).await?;
    }
    Ok(version)
}

/// `staged` becomes `dest`; what was `dest` stays as `dest.previous`.
fn put_in_place(staged: &Path, dest: &Path) -> Result<(), UpgradeError> {
    let install_err = |source| UpgradeError::Install {
        path: dest.to_owned(),
        source,
    };
    let mut previous = dest.as_os_str().to_owned();
    previous.push(".previous");
    match std::fs::remove_file(&previous) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(install_err(e)),
    }
    match std::fs::hard_link(dest, &previous) {
        Ok(()) => {}
        // A first front binary has no predecessor.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(install_err(e)),
    }
    std::fs::rename(staged, dest).map_err(install_err)
}

/// Writes the tar's `hostd` (checking its sha256) and `hostd-front` to
/// `to` (0755). Returns whether a front binary came.
fn extract(archive: impl Read, to: &Staged, expected: &str) -> Result<bool, UpgradeError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| UpgradeError::Install { path, source }
    };
    let mut tar = tar::Archive::new(archive);
    let (mut hostd, mut front) = (false, false);
    for entry in tar.entries().map_err(io(&to.hostd))? {
        let entry = entry.map_err(io(&to.hostd))?;
        let path = entry.path().map_err(io(&to.hostd))?.into_owned();
        let named = |name: &str| path.components().map(|c| c.as_os_str()).eq([name]);
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if named("hostd") {
            let actual = write_binary(entry, &to.hostd)?;
            if actual != expected {
                let _ = std::fs::remove_file(&to.hostd);
                return Err(UpgradeError::Digest {
                    expected: expected.to_owned(),
                    actual,
                });
            }
            hostd = true;
        } else if named(FRONT_BINARY) {
            // Its integrity is the artifact's digest, checked on upload.
            write_binary(entry, &to.front)?;
            front = true;
        }
    }
    if hostd {
        Ok(front)
    } else {
        let _ = std::fs::remove_file(&to.front);
        Err(UpgradeError::NoBinary)
    }
}

/// Writes `entry` to `to` (0755, synced); returns its sha256.
fn write_binary(entry: impl Read, to: &Path) -> Result<String, UpgradeError> {
    let io = |source| UpgradeError::Install {
        path: to.to_owned(),
        source,
    };
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
    Ok(hex(&hash.finalize()))
}

/// A new build must start here and name itself: `PROGRAM --version`
/// prints `PROGRAM VERSION`.
async fn runs(binary: &Path, program: &'static str) -> Result<String, UpgradeError> {
    let broken = |detail: String| UpgradeError::Broken { program, detail };
    let run = tokio::process::Command::new(binary)
        .arg("--version")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(VERSION_TIMEOUT, run).await {
        Err(_) => return Err(broken(format!("`--version` ran over {VERSION_TIMEOUT:?}"))),
        Ok(Err(e)) => return Err(broken(e.to_string())),
        Ok(Ok(out)) => out,
    };
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !text.starts_with(&format!("{program} ")) {
        let first = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        return Err(broken(format!(
            "`--version` exited {} printing `{text}` {first}",
            out.status
        )));
    }
    Ok(text)
}
