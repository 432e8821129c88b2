//! Root filesystems: the debootstrap cache, per-sandbox writable copies
//! (overlayfs, or a copy), and mount bookkeeping.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::SandboxError;
use super::cmd::Cmd;
use super::state::Layout;

const SUITE: &str = "bookworm";
const VARIANT: &str = "minbase";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "postgresql",
    "redis-server",
    "ca-certificates",
    "iproute2",
    "procps",
    "less",
    "curl",
    // As on EC2 images: a bare sandbox's operator provisions with sudo.
    "sudo",
    // Language runtimes and an app server this project did not write, for
    // the trials of apps declared in hostd.toml (gunicorn pulls in python3),
    // as packer's runtime_packages puts them on an image.
    "gunicorn",
    "nodejs",
];

/// FNV-1a 64: stable across Rust releases, unlike `DefaultHasher`.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Short hash of everything that determines the cache contents.
pub(crate) fn cache_key(suite: &str, variant: &str, packages: &[&str]) -> String {
    let text = format!("{suite}\n{variant}\n{}", packages.join(","));
    format!("{:08x}", fnv1a(text.as_bytes()) >> 32)
}

/// The cached root filesystem, built on first use. The build goes into a
/// temporary directory renamed into place at the end, so an interrupted
/// build never leaves a half cache.
pub(crate) async fn ensure_cache(layout: &Layout) -> Result<PathBuf, SandboxError> {
    let key = cache_key(SUITE, VARIANT, PACKAGES);
    let cache = layout.base.join(format!("rootfs-{key}"));
    if cache.is_dir() {
        return Ok(cache);
    }
    let _guard = layout.lock(".rootfs.lock").await?;
    if cache.is_dir() {
        return Ok(cache); // another `up` built it while we waited
    }
    super::cmd::require_tools(&[("debootstrap", "debootstrap"), ("chroot", "coreutils")])?;
    let tmp = layout.base.join(format!(".rootfs-{key}.tmp"));
    remove_tree(&tmp).await?; // leftover of an interrupted build
    let mirror = std::env::var("HOSTCTL_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
    info!(
        "building the sandbox root filesystem with debootstrap from {mirror} (once; a few minutes)"
    );
    let built = async {
        Cmd::new("debootstrap")
            .arg(format!("--variant={VARIANT}"))
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(SUITE)
            .arg(&tmp)
            .arg(&mirror)
            .run("build the root filesystem (check network access to the Debian mirror, or set HOSTCTL_DEBIAN_MIRROR)")
            .await?;
        Cmd::new("chroot")
            .arg(&tmp)
            .args(["apt-get", "clean"])
            .clean_env()
            .run("clean apt caches in the root filesystem")
            .await?;
        clear_dir(&tmp.join("var/lib/apt/lists"))?;
        // Per-host identity is created for each sandbox, never shared.
        remove_host_keys(&tmp)?;
        write(&tmp.join("etc/machine-id"), "")?;
        Ok::<(), SandboxError>(())
    }
    .await;
    if let Err(e) = built {
        if let Err(cleanup) = remove_tree(&tmp).await {
            warn!("cannot remove the partial build: {cleanup}");
        }
        return Err(e);
    }
    std::fs::rename(&tmp, &cache)
        .map_err(|e| SandboxError::io("move the root filesystem into the cache", &cache, e))?;
    info!("cached root filesystem at {}", cache.display());
    Ok(cache)
}

/// Remove what an interrupted cache build left (debootstrap killed by
/// Ctrl-C), unless another `up` is building right now.
pub(crate) async fn discard_partial_build(layout: &Layout) {
    let Some(_guard) = layout.try_lock(".rootfs.lock") else {
        return;
    };
    let tmp = layout.base.join(format!(
        ".rootfs-{}.tmp",
        cache_key(SUITE, VARIANT, PACKAGES)
    ));
    if tmp.exists() {
        info!(
            "removing the partial root filesystem build {}",
            tmp.display()
        );
        if let Err(e) = remove_tree(&tmp).await {
            warn!("{e}");
        }
    }
}

/// Make `dir/root` a writable copy of `cache`: an overlay mount when the
/// kernel allows it (returns true), otherwise a full copy.
pub(crate) async fn prepare_root(cache: &Path, dir: &Path) -> Result<bool, SandboxError> {
    let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("root"));
    for d in [&upper, &work, &root] {
        std::fs::create_dir_all(d).map_err(|e| SandboxError::io("create", d, e))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        cache.display(),
        upper.display(),
        work.display()
    );
    let mounted = Cmd::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&root)
        .run("mount the overlay root")
        .await;
    match mounted {
        Ok(_) => return Ok(true),
        Err(e) => warn!("overlay mount failed, copying the root filesystem instead: {e}"),
    }
    for d in [&upper, &work] {
        let _ = std::fs::remove_dir_all(d);
    }
    Cmd::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(cache.join("."))
        .arg(&root)
        .run("copy the root filesystem")
        .await?;
    Ok(false)
}

/// Mount points at or below `path` in our mount namespace, deepest first.
pub(crate) fn mounts_below(path: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = hostd_api::mountinfo::mount_points()
        .into_iter()
        .filter(|m| m.starts_with(path))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    found
}

/// Unmount everything at or below `path`.
pub(crate) async fn umount_below(path: &Path) -> Result<(), SandboxError> {
    for m in mounts_below(path) {
        info!("unmounting {}", m.display());
        if let Err(e) = Cmd::new("umount").arg(&m).run("unmount").await {
            warn!("{e}; detaching it lazily");
            Cmd::new("umount")
                .arg("--lazy")
                .arg(&m)
                .run("unmount (lazily)")
                .await?;
        }
    }
    Ok(())
}

/// Unmount anything below `path`, then delete it. Refuses to delete through
/// a mount point that is still there.
pub(crate) async fn remove_tree(path: &Path) -> Result<(), SandboxError> {
    if !path.exists() {
        return Ok(());
    }
    umount_below(path).await?;
    if let Some(m) = mounts_below(path).first() {
        return Err(SandboxError::Invalid {
            what: "refusing to delete a directory with a mount inside",
            detail: format!("{} is still mounted; unmount it and retry", m.display()),
        });
    }
    std::fs::remove_dir_all(path).map_err(|e| SandboxError::io("remove", path, e))
}

pub(crate) fn remove_host_keys(root: &Path) -> Result<(), SandboxError> {
    let dir = root.join("etc/ssh");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            let p = e.path();
            std::fs::remove_file(&p)
                .map_err(|err| SandboxError::io("remove a host key", &p, err))?;
        }
    }
    Ok(())
}

fn clear_dir(dir: &Path) -> Result<(), SandboxError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|err| SandboxError::io("remove", &p, err))?;
    }
    Ok(())
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), SandboxError> {
    std::fs::write(path, text).map_err(|e| SandboxError::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_is_stable_and_sensitive() {
        let a = cache_key("bookworm", "minbase", &["a", "b"]);
        assert_eq!(a.len(), 8);
        assert_eq!(a, cache_key("bookworm", "minbase", &["a", "b"]));
        assert_ne!(a, cache_key("bookworm", "minbase", &["a", "c"]));
        assert_ne!(a, cache_key("trixie", "minbase", &["a", "b"]));
        // Fixed value: changing the hash would silently orphan caches.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
