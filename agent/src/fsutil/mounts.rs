//! Which file system a path is on, and whether it is a mount point: a
//! restore cannot rename a mount point, and must find room on the file
//! system it writes to.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The nearest existing ancestor of `path` (itself when it exists).
fn existing(path: &Path) -> &Path {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
}

/// The mount point of the file system holding `path`: the highest
/// ancestor on the same device.
pub fn mount_point(path: &Path) -> Option<PathBuf> {
    let path = existing(path);
    let device = std::fs::metadata(path).ok()?.dev();
    let mut top = path.to_owned();
    for parent in path.ancestors().skip(1) {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == device => top = parent.to_owned(),
            _ => break,
        }
    }
    Some(top)
}

/// Whether `path` is where a file system is mounted (an EBS or EFS
/// volume, a tmpfs, a bind mount): renaming it fails with EBUSY.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    let other_device = std::fs::metadata(parent).is_ok_and(|p| p.dev() != meta.dev());
    // A bind mount of a directory of the same file system keeps the device.
    other_device
        || hostd_api::mountinfo::mount_points()
            .iter()
            .any(|m| m == path)
}

/// Bytes an unprivileged writer may still use on `path`'s file system
/// (what `df` shows as available).
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(existing(path)).map_err(std::io::Error::from)?;
    Ok(s.blocks_available().saturating_mul(s.fragment_size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_a_mount_point_and_a_fresh_directory_is_not() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(is_mount_point(Path::new("/")));
        assert!(!is_mount_point(dir.path()));
        assert!(available_bytes(&dir.path().join("not/yet")).is_ok());
        Ok(())
    }
}
