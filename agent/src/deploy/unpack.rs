//! A release artifact (a tar stream) unpacked into `releases/<version>/`,
//! refusing anything that would write outside it: absolute paths, `..`,
//! links that point out of the release, entries written through a link,
//! and device files. The archive is unpacked into a hidden staging
//! directory and renamed into place only when every entry passed, so a
//! refused or broken artifact leaves no release behind.
//!
//! Entries are checked by hand rather than with `tar`'s `unpack_in`, which
//! refuses `..` but follows a symlink the same archive created earlier.
//! A link's target is resolved through the links already in the staged
//! tree, and every link is resolved again once the tree is whole (a later
//! link can change where an earlier one leads). The bytes and entries
//! written are bounded as they are written.

use hostd_api::paths::{link_stays_inside, relative};
use std::ffi::OsString;
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
    #[error(
        "the release unpacks to more than {limit} (deploy.{key} in hostd.toml); nothing was installed"
    )]
    TooLarge { limit: String, key: &'static str },
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

/// How much one release may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub bytes: u64,
    pub entries: u64,
}

impl From<crate::config::DeployConfig> for Limits {
    fn from(c: crate::config::DeployConfig) -> Self {
        Self {
            bytes: c.max_release_mib.saturating_mul(1 << 20),
            entries: c.max_release_entries,
        }
    }
}

/// Unpacks `archive` as release `dest` (e.g. `/srv/api/releases/v2`).
/// Returns the number of entries written.
pub fn unpack(archive: impl Read, dest: &Path, limits: Limits) -> Result<usize, UnpackError> {
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
    let unpacked = unpack_into(archive, &staging, limits).and_then(|n| {
        every_link_stays_inside(&staging)?;
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

fn unpack_into(archive: impl Read, root: &Path, limits: Limits) -> Result<usize, UnpackError> {
    let mut tar = tar::Archive::new(archive);
    let mut written = 0;
    let mut bytes_left = limits.bytes;
    for entry in tar.entries().map_err(UnpackError::Read)? {
        if written as u64 >= limits.entries {
            return Err(UnpackError::TooLarge {
                limit: format!("{} entries", limits.entries),
                key: "max_release_entries",
            });
        }
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
                // One byte past what is left tells a too large file apart.
                let copied = std::io::copy(&mut (&mut entry).take(bytes_left + 1), &mut file)
                    .map_err(UnpackError::Read)?;
                if copied > bytes_left {
                    return Err(UnpackError::TooLarge {
                        limit: format!("{} MiB", limits.bytes >> 20),
                        key: "max_release_mib",
                    });
                }
                bytes_left -= copied;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(write_err(&path))?;
            }
            tar::EntryType::Symlink => {
                let target = link_target(&entry, &raw)?;
                if !link_stays_inside(&rel, &target) || !resolves_inside(root, &rel, &target) {
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

/// Whether the link at `link` (relative to `root`) pointing at `target`
/// stays inside `root` when followed through the links already in the
/// tree, as the kernel would follow them.
fn resolves_inside(root: &Path, link: &Path, target: &Path) -> bool {
    /// Links followed at most, as the kernel's ELOOP.
    const MAX_HOPS: usize = 40;
    let mut at: Vec<OsString> = link
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(s) => Some(s.to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let owned =
        |p: &Path| -> Vec<OsString> { p.components().map(|c| c.as_os_str().to_owned()).collect() };
    let mut todo: std::collections::VecDeque<OsString> = owned(target).into();
    let mut hops = 0;
    while let Some(part) = todo.pop_front() {
        match Path::new(&part).components().next() {
            Some(Component::Normal(name)) => {
                at.push(name.to_owned());
                let here: PathBuf = at.iter().fold(root.to_owned(), |p, c| p.join(c));
                if let Ok(next) = fs::read_link(&here) {
                    hops += 1;
                    if hops > MAX_HOPS || next.is_absolute() {
                        return false;
                    }
                    at.pop();
                    for c in owned(&next).into_iter().rev() {
                        todo.push_front(c);
                    }
                }
            }
            Some(Component::ParentDir) => {
                if at.pop().is_none() {
                    return false;
                }
            }
            Some(Component::CurDir) | None => {}
            Some(Component::RootDir | Component::Prefix(_)) => return false,
        }
    }
    true
}

/// Every link of the finished tree resolved again: one created later can
/// change where an earlier one leads.
fn every_link_stays_inside(root: &Path) -> Result<(), UnpackError> {
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let full = root.join(&dir);
        for entry in fs::read_dir(&full).map_err(write_err(&full))? {
            let entry = entry.map_err(write_err(&full))?;
            let rel = dir.join(entry.file_name());
            let kind = entry.file_type().map_err(write_err(&full))?;
            if kind.is_dir() {
                dirs.push(rel);
            } else if kind.is_symlink() {
                let target = fs::read_link(entry.path()).map_err(write_err(&full))?;
                if !resolves_inside(root, &rel, &target) {
                    return Err(refused(&rel, "a link pointing outside the release"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
