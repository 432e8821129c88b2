//! Where an artifact's entries come from: a directory walked in a fixed
//! order, or an archive read in its own order. Both refuse what hostd would
//! refuse to unpack.

use hostd_api::paths::{link_stays_inside, relative};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::{ArtifactError, Normaliser, pack_err, read_err, refused};

/// The directory's entries sorted by relative path bytes, so the order does
/// not depend on the filesystem.
pub(super) fn pack_dir<W: Write>(
    root: &Path,
    out: &mut Normaliser<W>,
) -> Result<(), ArtifactError> {
    let mut found = Vec::new();
    collect(root, Path::new(""), &mut found)?;
    found.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    let pack_err = pack_err(root);
    for (rel, kind) in found {
        let full = root.join(&rel);
        match kind {
            Kind::Dir => out.dir(&rel).map_err(&pack_err)?,
            Kind::File => {
                let file = File::open(&full).map_err(read_err(&full))?;
                let meta = file.metadata().map_err(read_err(&full))?;
                let size = meta.len();
                let data = Exact {
                    inner: file,
                    left: size,
                };
                out.file(&rel, meta.permissions().mode(), size, data)
                    .map_err(&pack_err)?;
            }
            Kind::Symlink => {
                let target = fs::read_link(&full).map_err(read_err(&full))?;
                if !link_stays_inside(&rel, &target) {
                    return Err(refused(
                        root,
                        &rel,
                        "a symlink pointing outside the artifact",
                    ));
                }
                out.link(EntryType::Symlink, &rel, &target)
                    .map_err(&pack_err)?;
            }
        }
    }
    Ok(())
}

enum Kind {
    Dir,
    File,
    Symlink,
}

fn collect(root: &Path, rel: &Path, found: &mut Vec<(PathBuf, Kind)>) -> Result<(), ArtifactError> {
    let dir = root.join(rel);
    for entry in fs::read_dir(&dir).map_err(read_err(&dir))? {
        let entry = entry.map_err(read_err(&dir))?;
        let rel = rel.join(entry.file_name());
        // file_type() does not follow symlinks: links are stored as links.
        let ft = entry.file_type().map_err(read_err(&entry.path()))?;
        if ft.is_dir() {
            found.push((rel.clone(), Kind::Dir));
            collect(root, &rel, found)?;
        } else if ft.is_file() {
            found.push((rel, Kind::File));
        } else if ft.is_symlink() {
            found.push((rel, Kind::Symlink));
        } else {
            let kind = if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_block_device() {
                "block device"
            } else if ft.is_char_device() {
                "character device"
            } else {
                "special file"
            };
            return Err(ArtifactError::Unsupported {
                path: entry.path(),
                kind,
            });
        }
    }
    Ok(())
}

/// Re-writes an archive's entries in archive order.
pub(super) fn pack_archive<R: Read, W: Write>(
    artifact: &Path,
    reader: R,
    out: &mut Normaliser<W>,
) -> Result<(), ArtifactError> {
    let pack_err = pack_err(artifact);
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(&pack_err)? {
        let mut entry = entry.map_err(&pack_err)?;
        let raw = entry.path().map_err(&pack_err)?.into_owned();
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            continue;
        }
        let rel =
            relative(&raw).ok_or_else(|| refused(artifact, &raw, "an absolute path or `..`"))?;
        if rel.as_os_str().is_empty() {
            // `./`, as `tar -C dist .` writes it: the root itself.
            if kind == EntryType::Directory {
                continue;
            }
            return Err(refused(artifact, &raw, "an empty path"));
        }
        let link_target = |entry: &tar::Entry<'_, R>| -> Result<PathBuf, ArtifactError> {
            entry
                .link_name()
                .map_err(&pack_err)?
                .map(|t| t.into_owned())
                .ok_or_else(|| refused(artifact, &raw, "a link without a target"))
        };
        match kind {
            EntryType::Directory => out.dir(&rel).map_err(&pack_err)?,
            EntryType::Regular | EntryType::Continuous => {
                let mode = entry.header().mode().map_err(&pack_err)?;
                let size = entry.size();
                out.file(&rel, mode, size, &mut entry).map_err(&pack_err)?;
            }
            EntryType::Symlink => {
                let target = link_target(&entry)?;
                if !link_stays_inside(&rel, &target) {
                    return Err(refused(
                        artifact,
                        &raw,
                        "a symlink pointing outside the artifact",
                    ));
                }
                out.link(EntryType::Symlink, &rel, &target)
                    .map_err(&pack_err)?;
            }
            EntryType::Link => {
                let target = link_target(&entry)?;
                let target = relative(&target)
                    .filter(|t| !t.as_os_str().is_empty())
                    .ok_or_else(|| {
                        refused(artifact, &raw, "a hard link to a path outside the artifact")
                    })?;
                out.link(EntryType::Link, &rel, &target)
                    .map_err(&pack_err)?;
            }
            EntryType::Fifo => return Err(refused(artifact, &raw, "a fifo")),
            EntryType::Char | EntryType::Block => {
                return Err(refused(artifact, &raw, "a device file"));
            }
            _ => {
                return Err(refused(
                    artifact,
                    &raw,
                    "not a directory, regular file or link",
                ));
            }
        }
    }
    Ok(())
}

/// A file read for exactly the size its header announced: one that shrank
/// meanwhile (a build still running) would otherwise corrupt the archive.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being packed",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
