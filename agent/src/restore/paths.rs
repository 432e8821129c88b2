//! Files' and Redis's part of a restore, synchronous (a blocking thread):
//! each path restored beside itself (`PATH.hostd-restore`), then swapped in
//! by renames once everything is staged. The live path becomes
//! `PATH.hostd-pre-restore` until the whole restore has succeeded.

use std::path::{Path, PathBuf};

use rustic_core::repofile::SnapshotFile;
use rustic_core::{IndexedFullStatus, LocalDestination, LsOptions, Repository, RestoreOptions};

const STAGED: &str = ".hostd-restore";
const PREVIOUS: &str = ".hostd-pre-restore";

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("restoring {path}: {detail}")]
    Restore { path: PathBuf, detail: String },
    #[error(transparent)]
    Io(#[from] crate::fsutil::FileError),
    #[error(
        "{previous} is left from an earlier restore ({path} as it was before that restore); \
         remove or move it, then restore again"
    )]
    PreviousLeft { path: PathBuf, previous: PathBuf },
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn staged(path: &Path) -> PathBuf {
    with_suffix(path, STAGED)
}

pub fn previous(path: &Path) -> PathBuf {
    with_suffix(path, PREVIOUS)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PathsError + use<> {
    let e = crate::fsutil::file_error(what, path);
    move |source| PathsError::Io(e(source))
}

/// Removes a file or a directory tree; absent is fine.
fn remove(path: &Path) -> Result<(), PathsError> {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    r.map_err(io("remove", path))
}

/// Before anything is stopped: a previous copy left by an earlier restore
/// is the operator's to remove, never overwritten.
pub fn preflight(paths: &[PathBuf]) -> Result<(), PathsError> {
    for path in paths {
        let previous = previous(path);
        if std::fs::symlink_metadata(&previous).is_ok() {
            return Err(PathsError::PreviousLeft {
                path: path.clone(),
                previous,
            });
        }
    }
    Ok(())
}

/// Restores `source` (a path inside `snap`) to `dest`'s staging path,
/// with owners and modes as backed up. Returns the staging path.
pub fn stage(
    repo: &Repository<IndexedFullStatus>,
    snap: &SnapshotFile,
    source: &Path,
    dest: &Path,
) -> Result<PathBuf, PathsError> {
    let staged = staged(dest);
    remove(&staged)?;
    let fail = |detail: String| PathsError::Restore {
        path: dest.to_owned(),
        detail,
    };
    let node = repo
        .node_from_snapshot_and_path(snap, &source.to_string_lossy())
        .map_err(|e| fail(e.display_log()))?;
    let ls = repo
        .ls(&node, &LsOptions::default().recursive(true))
        .map_err(|e| fail(e.display_log()))?;
    let target = LocalDestination::new(&staged.to_string_lossy(), true, !node.is_dir())
        .map_err(|e| fail(e.display_log()))?;
    let opts = RestoreOptions::default();
    let restored = repo
        .prepare_restore(&opts, ls.clone(), &target, false)
        .and_then(|plan| repo.restore(plan, &opts, ls, &target));
    if let Err(e) = restored {
        let _ = remove(&staged);
        return Err(fail(e.display_log()));
    }
    Ok(staged)
}

/// `dest` becomes its previous copy and the staged path takes its place.
pub fn swap(dest: &Path) -> Result<(), PathsError> {
    let staged = staged(dest);
    if std::fs::symlink_metadata(dest).is_ok() {
        std::fs::rename(dest, previous(dest)).map_err(io("move aside", dest))?;
    }
    std::fs::rename(&staged, dest).map_err(io("move into place", &staged))?;
    // Both renames are durable once the directory holding them is synced.
    let parent = dest.parent().unwrap_or(Path::new("/"));
    crate::fsutil::sync_dir(parent).map_err(io("sync", parent))
}

/// Undoes [`swap`], also one cut short between its two renames: the
/// restored copy back to its staged name, then the previous copy back in
/// place. Each step only when its source is there and its target free, so
/// a second call (a recovery after a crash in the first) finishes the job.
pub fn unswap(dest: &Path) -> Result<(), PathsError> {
    let (staged, previous) = (staged(dest), previous(dest));
    let present = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    if !present(&staged) && present(dest) {
        std::fs::rename(dest, &staged).map_err(io("move back to staging", dest))?;
    }
    if present(&previous) && !present(dest) {
        std::fs::rename(&previous, dest).map_err(io("move back into place", &previous))?;
    }
    let parent = dest.parent().unwrap_or(Path::new("/"));
    crate::fsutil::sync_dir(parent).map_err(io("sync", parent))
}

pub fn drop_previous(dest: &Path) -> Result<(), PathsError> {
    remove(&previous(dest))
}

pub fn drop_staged(dest: &Path) -> Result<(), PathsError> {
    remove(&staged(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_keeps_the_previous_copy_and_preflight_then_refuses()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let live = dir.path().join("uploads");
        std::fs::create_dir(&live)?;
        std::fs::write(live.join("a"), b"old")?;
        std::fs::create_dir(staged(&live))?;
        std::fs::write(staged(&live).join("a"), b"new")?;
        preflight(std::slice::from_ref(&live))?;
        swap(&live)?;
        assert_eq!(std::fs::read(live.join("a"))?, b"new");
        assert_eq!(std::fs::read(previous(&live).join("a"))?, b"old");
        let e = preflight(std::slice::from_ref(&live)).map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(t) if t.contains("uploads.hostd-pre-restore")),
            "{e:?}"
        );
        drop_previous(&live)?;
        assert!(!previous(&live).exists());
        preflight(&[live])?;
        Ok(())
    }

    fn read(p: &Path) -> Option<Vec<u8>> {
        std::fs::read(p.join("a")).ok()
    }

    /// `live` holding "old" and a staged "new", then the swap done up to
    /// `renames` of its two renames.
    fn half_swapped(renames: usize) -> Result<(tempfile::TempDir, PathBuf), std::io::Error> {
        let dir = tempfile::tempdir()?;
        let live = dir.path().join("uploads");
        for (p, body) in [(&live, "old"), (&staged(&live), "new")] {
            std::fs::create_dir(p)?;
            std::fs::write(p.join("a"), body)?;
        }
        if renames >= 1 {
            std::fs::rename(&live, previous(&live))?;
        }
        if renames >= 2 {
            std::fs::rename(staged(&live), &live)?;
        }
        Ok((dir, live))
    }

    #[test]
    fn unswap_puts_the_old_data_back_from_any_point_of_a_swap_and_twice()
    -> Result<(), Box<dyn std::error::Error>> {
        for renames in 0..=2 {
            let (_dir, live) = half_swapped(renames)?;
            unswap(&live)?;
            unswap(&live)?;
            assert_eq!(read(&live).as_deref(), Some(&b"old"[..]), "after {renames}");
            assert_eq!(
                read(&staged(&live)).as_deref(),
                Some(&b"new"[..]),
                "after {renames}"
            );
            assert!(!previous(&live).exists(), "after {renames}");
        }
        // A path that did not exist before the restore is absent again.
        let dir = tempfile::tempdir()?;
        let live = dir.path().join("new-dir");
        std::fs::create_dir(staged(&live))?;
        swap(&live)?;
        assert!(live.exists() && !previous(&live).exists());
        unswap(&live)?;
        assert!(!live.exists() && staged(&live).exists());
        Ok(())
    }
}
