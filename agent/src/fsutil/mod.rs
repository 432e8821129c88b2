//! Durable file replacement, shared by everything hostd writes that must
//! never be seen half-written: unit files, credentials, the desired state
//! and the last-good secrets.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

mod mounts;
pub use mounts::{available_bytes, is_mount_point, mount_point};

/// A file operation that failed: what was done to which path. Messages
/// name the file and the operation, never its contents.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}", path.display())]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The error of `action` on `path`, for `map_err`.
pub fn file_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> FileError + use<> {
    let path = path.to_owned();
    move |source| FileError {
        action,
        path,
        source,
    }
}

/// Where [`write_atomically`] stages `dest` before the rename.
pub fn tmp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".hostd-tmp");
    dest.with_file_name(name)
}

/// Temporary file, fsync, rename, directory fsync: a reader sees the old
/// or the new content, and after a power loss too. The temporary file gets
/// `mode` before any byte is written, so a secret is never briefly
/// readable by others. Creates missing parent directories (0755: callers
/// that need a private directory create it first).
pub fn write_atomically(dest: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomically_as(dest, body, mode, None)
}

/// [`write_atomically`], the file owned by group `gid` (set before any
/// byte is written, like the mode).
fn write_atomically_as(
    dest: &Path,
    body: &[u8],
    mode: u32,
    gid: Option<u32>,
) -> std::io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tmp_path(dest);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    // A leftover temporary file keeps its old mode through open(): set it.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    if gid.is_some() {
        std::os::unix::fs::fchown(&f, None, gid)?;
    }
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dest)?;
    // The rename is durable only once the directory is synced.
    sync_dir(dir)
}

/// fsync of every file and directory below `root` (not following links),
/// then of `root`: what makes a tree just written durable before it is
/// renamed into place.
pub fn sync_tree(root: &Path) -> std::io::Result<()> {
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                std::fs::File::open(entry.path())?.sync_all()?;
            }
        }
        sync_dir(&dir)?;
    }
    Ok(())
}

/// fsync of a directory: what makes a rename or link in it durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `body` to `dest` (atomically, with `mode`) unless it already
/// holds exactly that with that mode; true when it wrote. An unchanged unit
/// file or credential thereby never costs a daemon-reload.
pub fn write_if_changed(dest: &Path, body: &[u8], mode: u32) -> std::io::Result<bool> {
    replace_if_changed(dest, body, mode, None)
}

/// [`write_if_changed`] for a file group `gid` must read (a service's own
/// config that holds a secret).
pub fn write_if_changed_for_group(
    dest: &Path,
    body: &[u8],
    mode: u32,
    gid: u32,
) -> std::io::Result<bool> {
    replace_if_changed(dest, body, mode, Some(gid))
}

fn replace_if_changed(
    dest: &Path,
    body: &[u8],
    mode: u32,
    gid: Option<u32>,
) -> std::io::Result<bool> {
    let same_meta = std::fs::metadata(dest)
        .is_ok_and(|m| m.permissions().mode() & 0o7777 == mode && gid.is_none_or(|g| m.gid() == g));
    if same_meta && std::fs::read(dest).ok().as_deref() == Some(body) {
        return Ok(false);
    }
    write_atomically_as(dest, body, mode, gid)?;
    Ok(true)
}

/// A text file of at most `limit` bytes; a longer one is an error rather
/// than a read of whatever size it grew to.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!("longer than {limit} bytes")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_with_the_mode_even_over_a_leftover_temporary_file() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let dest = dir.path().join("secret");
        std::fs::write(tmp_path(&dest), b"stale")?;
        std::fs::set_permissions(tmp_path(&dest), std::fs::Permissions::from_mode(0o644))?;
        write_atomically(&dest, b"new", 0o600)?;
        assert_eq!(std::fs::read(&dest)?, b"new");
        assert_eq!(
            std::fs::metadata(&dest)?.permissions().mode() & 0o777,
            0o600
        );
        assert!(!tmp_path(&dest).exists());
        assert!(
            !write_if_changed(&dest, b"new", 0o600)?,
            "unchanged: no write"
        );
        assert!(
            write_if_changed(&dest, b"new", 0o640)?,
            "a mode change is a change"
        );
        Ok(())
    }
}
