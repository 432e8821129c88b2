//! A release artifact (a tar stream) unpacked into `releases/<version>/`,
//! refusing anything that would write outside it: absolute paths, `..`,
//! links that point out of the release, entries written through a link,
//! and device files. The archive is unpacked into a hidden staging
//! directory and renamed into place only when every entry passed, so a
//! refused or broken artifact leaves no release behind.
//!
//! Entries are checked by hand rather than with `tar`'s `unpack_in`, which
//! refuses `..` but follows a symlink the same archive created earlier.

use hostd_api::paths::{link_stays_inside, relative};
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Modes kept from the archive: no setuid, setgid or sticky bits, nothing
/// writable by group or others.
const MODE_MASK: u32 = 0o755;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("the artifact entry `{entry}` is refused: {why}; nothing was installed")]
    Refused { entry: String, why: &'static str },
    #[error("release {0} already exists")]
    Exists(PathBuf),
    #[error("cannot read the artifact")]
    Read(#[source] std::io::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn refused(entry: &Path, why: &'static str) -> UnpackError {
    UnpackError::Refused {
        entry: entry.display().to_string(),
        why,
    }
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> UnpackError {
    let path = path.to_owned();
    move |source| UnpackError::Write { path, source }
}

/// Refuses a path whose parent, inside the root, is anything but a real
/// directory (a symlink the archive created would redirect the write).
fn check_parents(root: &Path, rel: &Path, entry: &Path) -> Result<(), UnpackError> {
    let mut at = root.to_owned();
    let parents: Vec<Component<'_>> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for c in parents {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refused(entry, "it is written through a link or a file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(write_err(&at))?;
            }
            Err(e) => return Err(write_err(&at)(e)),
        }
    }
    Ok(())
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, raw: &Path) -> Result<PathBuf, UnpackError> {
    Ok(entry
        .link_name()
        .map_err(UnpackError::Read)?
        .ok_or_else(|| refused(raw, "a link without a target"))?
        .into_owned())
}

/// Unpacks `archive` as release `dest` (e.g. `/srv/api/releases/v2`).
/// Returns the number of entries written.
pub fn unpack(archive: impl Read, dest: &Path) -> Result<usize, UnpackError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(UnpackError::Exists(dest.to_owned()));
    }
    let parent = dest.parent().unwrap_or(Path::new("/"));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{name}.partial"));
    if fs::symlink_metadata(&staging).is_ok() {
        fs::remove_dir_all(&staging).map_err(write_err(&staging))?;
    }
    fs::create_dir_all(&staging).map_err(write_err(&staging))?;
    // On disk before `current` can name it: a power loss after the switch
    // must not leave a release of empty files.
    let unpacked = unpack_into(archive, &staging).and_then(|n| {
        crate::fsutil::sync_tree(&staging).map_err(write_err(&staging))?;
        Ok(n)
    });
    match unpacked {
        Ok(n) => {
            fs::rename(&staging, dest).map_err(write_err(dest))?;
            crate::fsutil::sync_dir(parent).map_err(write_err(parent))?;
            Ok(n)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn unpack_into(archive: impl Read, root: &Path) -> Result<usize, UnpackError> {
    let mut tar = tar::Archive::new(archive);
    let mut written = 0;
    for entry in tar.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
        let rel = relative(&raw).ok_or_else(|| refused(&raw, "an absolute path or `..`"))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        check_parents(root, &rel, &raw)?;
        let path = root.join(&rel);
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
            return Err(refused(&raw, "it appears twice in the archive"));
        }
        let mode = entry.header().mode().map_err(UnpackError::Read)? & MODE_MASK;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                if fs::symlink_metadata(&path).is_err() {
                    fs::create_dir(&path).map_err(write_err(&path))?;
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(write_err(&path))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(write_err(&path))?;
                std::io::copy(&mut entry, &mut file).map_err(UnpackError::Read)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(write_err(&path))?;
            }
            tar::EntryType::Symlink => {
                let target = link_target(&entry, &raw)?;
                if !link_stays_inside(&rel, &target) {
                    return Err(refused(&raw, "a link pointing outside the release"));
                }
                std::os::unix::fs::symlink(&target, &path).map_err(write_err(&path))?;
            }
            tar::EntryType::Link => {
                let target = link_target(&entry, &raw)?;
                let target = relative(&target)
                    .ok_or_else(|| refused(&raw, "a hard link to a path outside the release"))?;
                check_parents(root, &target, &raw)?;
                let source = root.join(&target);
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.is_file() => {}
                    _ => return Err(refused(&raw, "a hard link to something not in the release")),
                }
                fs::hard_link(&source, &path).map_err(write_err(&path))?;
            }
            _ => return Err(refused(&raw, "not a file, directory or link")),
        }
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
