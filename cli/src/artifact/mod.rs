//! A service's artifact (a directory or a tar archive) packed for upload as
//! a normalised, zstd-compressed tar named by the sha256 of the tar.
//!
//! Normalised means nothing but content decides the bytes: a fixed entry
//! order for directories, and no mtimes, owners or permission bits beyond
//! 0o755. The same release then has the same digest on every deploy, which
//! lets the host skip an upload it already holds.
//!
//! Paths and links that hostd would refuse when unpacking are refused here
//! already, so the operator hears about them before anything is uploaded.

mod delta;
mod sources;
mod upload;

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use hostd_api::deploy::hex;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use sources::{pack_archive, pack_dir};
pub use upload::{Upload, ensure_artifact};

/// Permission bits kept: no setuid, setgid or sticky bit, nothing writable
/// by group or others (hostd masks the same way).
const MODE_MASK: u32 = 0o755;
const ZSTD_LEVEL: i32 = 3;

/// A packed artifact, ready to upload.
#[derive(Debug)]
pub struct Packed {
    /// The zstd-compressed normalised tar, positioned at its start (a temp
    /// file, removed on drop).
    pub file: tempfile::NamedTempFile,
    /// sha256 of the *uncompressed* normalised tar, lowercase hex (64
    /// chars): the artifact's identity on the host.
    pub digest: String,
    pub tar_bytes: u64,
    pub compressed_bytes: u64,
    pub entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(
        "artifact {} does not exist; check `artifact` in hostctl.toml, or run the service's build",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error(
        "artifact {} is neither a directory nor a .tar, .tar.gz, .tgz or .tar.zst file",
        path.display()
    )]
    Format { path: PathBuf },
    #[error(
        "{} is a {kind}; an artifact may hold only directories, regular files and symlinks",
        path.display()
    )]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("artifact {}: the entry `{entry}` is refused: {why}", artifact.display())]
    Refused {
        artifact: PathBuf,
        entry: String,
        why: &'static str,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot pack artifact {}", path.display())]
    Pack {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the packed artifact in {}", dir.display())]
    TempFile {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Packs `artifact` (a directory, or a .tar, .tar.gz, .tgz or .tar.zst
/// file) into a temp file in the system temp directory.
pub fn pack(artifact: &Path) -> Result<Packed, ArtifactError> {
    let meta = fs::metadata(artifact).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ArtifactError::Missing {
            path: artifact.to_owned(),
        },
        _ => read_err(artifact)(source),
    })?;
    let form = if meta.is_dir() {
        Some(Form::Dir)
    } else if meta.is_file() {
        Form::of(artifact)
    } else {
        None
    };
    let form = form.ok_or_else(|| ArtifactError::Format {
        path: artifact.to_owned(),
    })?;
    let dir = std::env::temp_dir();
    let mut tmp = tempfile::Builder::new()
        .prefix("hostctl-artifact-")
        .suffix(".tar.zst")
        .tempfile_in(&dir)
        .map_err(|source| ArtifactError::TempFile { dir, source })?;
    let pack_err = pack_err(artifact);
    let tar = write_tar(artifact, form, tmp.as_file())?;
    let file = tmp.as_file_mut();
    file.flush().map_err(&pack_err)?;
    let compressed_bytes = file.metadata().map_err(&pack_err)?.len();
    file.rewind().map_err(&pack_err)?;
    tracing::debug!(
        artifact = %artifact.display(),
        digest = %tar.digest,
        entries = tar.entries,
        tar_bytes = tar.bytes,
        compressed_bytes,
        "packed artifact"
    );
    Ok(Packed {
        file: tmp,
        digest: tar.digest,
        tar_bytes: tar.bytes,
        compressed_bytes,
        entries: tar.entries,
    })
}

struct Written {
    digest: String,
    bytes: u64,
    entries: u64,
}

fn write_tar(artifact: &Path, form: Form, dest: &File) -> Result<Written, ArtifactError> {
    let pack_err = pack_err(artifact);
    let mut encoder = zstd::Encoder::new(dest, ZSTD_LEVEL).map_err(&pack_err)?;
    encoder.include_checksum(true).map_err(&pack_err)?;
    let mut out = Normaliser::new(encoder);
    let open = || -> Result<_, ArtifactError> {
        let file = File::open(artifact).map_err(read_err(artifact))?;
        Ok(BufReader::new(file))
    };
    match form {
        Form::Dir => pack_dir(artifact, &mut out)?,
        Form::Tar => pack_archive(artifact, open()?, &mut out)?,
        Form::Gzip => {
            let decoder = flate2::bufread::MultiGzDecoder::new(open()?);
            pack_archive(artifact, decoder, &mut out)?;
        }
        Form::Zstd => {
            let decoder = zstd::Decoder::with_buffer(open()?).map_err(&pack_err)?;
            pack_archive(artifact, decoder, &mut out)?;
        }
    }
    let entries = out.entries;
    // into_inner writes the end-of-archive blocks, which are hashed too.
    let hashing = out.builder.into_inner().map_err(&pack_err)?;
    hashing.inner.finish().map_err(&pack_err)?;
    Ok(Written {
        digest: hex(&hashing.hasher.finalize()),
        bytes: hashing.bytes,
        entries,
    })
}

#[derive(Debug, Clone, Copy)]
enum Form {
    Dir,
    Tar,
    Gzip,
    Zstd,
}

impl Form {
    fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".tar") {
            Some(Self::Tar)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Self::Gzip)
        } else if name.ends_with(".tar.zst") {
            Some(Self::Zstd)
        } else {
            None
        }
    }
}

fn read_err(path: &Path) -> impl Fn(io::Error) -> ArtifactError {
    let path = path.to_owned();
    move |source| ArtifactError::Read {
        path: path.clone(),
        source,
    }
}

fn pack_err(path: &Path) -> impl Fn(io::Error) -> ArtifactError {
    let path = path.to_owned();
    move |source| ArtifactError::Pack {
        path: path.clone(),
        source,
    }
}

fn refused(artifact: &Path, entry: &Path, why: &'static str) -> ArtifactError {
    ArtifactError::Refused {
        artifact: artifact.to_owned(),
        entry: entry.display().to_string(),
        why,
    }
}

/// Writes entries with headers that carry nothing but type, path, mode and
/// size (plus link target), into a hashing writer.
struct Normaliser<W: Write> {
    builder: tar::Builder<Hashing<W>>,
    entries: u64,
}

impl<W: Write> Normaliser<W> {
    fn new(inner: W) -> Self {
        Self {
            builder: tar::Builder::new(Hashing {
                inner,
                hasher: Sha256::new(),
                bytes: 0,
            }),
            entries: 0,
        }
    }

    fn dir(&mut self, rel: &Path) -> io::Result<()> {
        // The trailing slash is how tar tools tell a directory by its name.
        let mut path = rel.as_os_str().to_owned();
        path.push("/");
        let mut header = header(EntryType::Directory, 0o755, 0);
        self.builder.append_data(&mut header, path, io::empty())?;
        self.entries += 1;
        Ok(())
    }

    fn file(&mut self, rel: &Path, mode: u32, size: u64, data: impl Read) -> io::Result<()> {
        let mut header = header(EntryType::Regular, mode & MODE_MASK, size);
        self.builder.append_data(&mut header, rel, data)?;
        self.entries += 1;
        Ok(())
    }

    fn link(&mut self, kind: EntryType, rel: &Path, target: &Path) -> io::Result<()> {
        // A symlink's mode means nothing; a hard link's is its target's.
        let mode = if kind == EntryType::Symlink {
            0o777
        } else {
            MODE_MASK
        };
        let mut header = header(kind, mode, 0);
        self.builder.append_link(&mut header, rel, target)?;
        self.entries += 1;
        Ok(())
    }
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Hashes and counts the tar bytes on their way to the compressor.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// sha256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

#[cfg(test)]
mod tests;
