//! Before anything stops, what the swap and the staging need of the file
//! systems: no restored path may be a mount point (a swap renames it,
//! which fails with EBUSY after the databases were already swapped), and
//! every file system must hold its staged copies beside the live data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustic_core::repofile::SnapshotFile;
use rustic_core::{IndexedFullStatus, LsOptions, Repository};

use crate::fsutil::{available_bytes, is_mount_point, mount_point};

/// Left free on a file system after a restore's staged copies: a full
/// disk under PostgreSQL is an outage of its own.
const SPARE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error(
        "{path} is a mount point (a file system of its own): a restore puts a path back by \
         renaming it, which a mount point cannot be. List the directories inside it in \
         backup.paths instead; this snapshot can be restored elsewhere with \
         `restic restore ID --target DIR`. Nothing changed"
    )]
    MountPoint { path: PathBuf },
    #[error(
        "not enough room on the file system at {} for {}: the restored copies need {} \
         beside the live data and {} is free ({} kept spare); nothing changed",
        .mount.display(), .what.join(", "), size(*.needed), size(*.free), size(*.spare)
    )]
    NoRoom {
        mount: PathBuf,
        what: Vec<String>,
        needed: u64,
        free: u64,
        spare: u64,
    },
    #[error("cannot measure the free space on {}: {source}", .path.display())]
    Measure {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("measuring {path} in snapshot {snapshot}: {detail}")]
    Snapshot {
        path: String,
        snapshot: String,
        detail: String,
    },
}

/// `3145728 bytes (3.0 MiB)`: exact, and readable.
fn size(bytes: u64) -> String {
    // Display only; f64 is exact far beyond any disk size.
    #[allow(clippy::cast_precision_loss)]
    let mib = bytes as f64 / f64::from(1u32 << 20);
    format!("{bytes} bytes ({mib:.1} MiB)")
}

/// One staged copy: what it is, a path on the file system it is written
/// to, and its size.
#[derive(Debug, Clone)]
pub struct Need {
    pub what: String,
    pub at: PathBuf,
    pub bytes: u64,
}

pub fn refuse_mount_points(paths: &[PathBuf]) -> Result<(), RoomError> {
    match paths.iter().find(|p| is_mount_point(p)) {
        Some(p) => Err(RoomError::MountPoint { path: p.clone() }),
        None => Ok(()),
    }
}

/// Every file system holds what is staged on it, plus the spare.
pub fn check(needs: &[Need]) -> Result<(), RoomError> {
    let mut by_fs: BTreeMap<PathBuf, (Vec<String>, u64)> = BTreeMap::new();
    for n in needs {
        let mount = mount_point(&n.at).unwrap_or_else(|| PathBuf::from("/"));
        let entry = by_fs.entry(mount).or_default();
        entry.0.push(n.what.clone());
        entry.1 = entry.1.saturating_add(n.bytes);
    }
    for (mount, (what, needed)) in by_fs {
        let free = available_bytes(&mount).map_err(|source| RoomError::Measure {
            path: mount.clone(),
            source,
        })?;
        let spare = SPARE_BYTES.min(free / 20);
        if needed.saturating_add(spare) > free {
            return Err(RoomError::NoRoom {
                mount,
                what,
                needed,
                free,
                spare,
            });
        }
    }
    Ok(())
}

/// The bytes of the files under `path` in `snap`.
pub fn stored_bytes(
    repo: &Repository<IndexedFullStatus>,
    snap: &SnapshotFile,
    path: &str,
) -> Result<u64, RoomError> {
    let fail = |detail: String| RoomError::Snapshot {
        path: path.to_owned(),
        snapshot: snap.id.to_hex().to_string(),
        detail,
    };
    let node = repo
        .node_from_snapshot_and_path(snap, path)
        .map_err(|e| fail(e.display_log()))?;
    if !node.is_dir() {
        return Ok(node.meta.size);
    }
    let mut total = 0u64;
    let entries = repo
        .ls(&node, &LsOptions::default().recursive(true))
        .map_err(|e| fail(e.display_log()))?;
    for entry in entries {
        let (_, node) = entry.map_err(|e| fail(e.display_log()))?;
        if node.is_file() {
            total = total.saturating_add(node.meta.size);
        }
    }
    Ok(total)
}

/// Where a path's staged copy is written: beside it.
pub fn beside(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_need_beyond_the_free_space_names_the_file_system_and_the_bytes() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let free = available_bytes(dir.path())?;
        let need = |bytes| Need {
            what: "/data/small".into(),
            at: dir.path().to_owned(),
            bytes,
        };
        assert!(check(&[need(1024)]).is_ok());
        let text = check(&[need(free / 2), need(free / 2 + 1)])
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        let mount = mount_point(dir.path()).unwrap_or_default();
        assert!(
            text.starts_with(&format!(
                "not enough room on the file system at {} for /data/small, /data/small: the restored copies need {} bytes",
                mount.display(),
                free + 1
            )),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn a_mount_point_is_refused_with_what_to_do_instead() {
        let text = refuse_mount_points(&[PathBuf::from("/tmp/x-not-there"), PathBuf::from("/")])
            .map_err(|e| e.to_string());
        assert!(
            matches!(&text, Err(t) if t.starts_with("/ is a mount point") && t.contains("backup.paths")),
            "{text:?}"
        );
    }
}
