//! Uploaded artifacts, by content: `<state_dir>/artifacts/<sha256>.tar.zst`,
//! root-only. The name is the sha256 of the uncompressed tar, checked
//! before the file gets that name, so a name always tells the truth and a
//! repeat deploy of the same build needs no upload. A build that shares
//! most of its content with one the host holds is sent as a delta
//! ([`assemble`]) of the chunks the host lacks ([`chunk_index`]).

mod assemble;
mod chunk_index;

use std::io::Read;
use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use hostd_api::chunks::{self, Chunk, ChunksLacking, RecipeError};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

/// Larger uploads are refused as they arrive (compressed bytes).
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;
/// What hostctl compresses with; a rebuilt artifact is stored alike.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("`{0}` is not a sha256 digest (64 lowercase hex digits)")]
    BadDigest(String),
    #[error("the host has no artifact {0}; upload it first (hostctl deploy does)")]
    Missing(String),
    #[error("the upload broke off after {received} bytes")]
    Upload {
        received: u64,
        #[source]
        source: axum::Error,
    },
    #[error("the upload is larger than {} GiB", MAX_ARTIFACT_BYTES >> 30)]
    TooLarge,
    #[error("the upload is not zstd-compressed data: {0}")]
    NotZstd(#[source] std::io::Error),
    #[error("the upload's content has sha256 {actual}, not {expected}: corrupted in transit?")]
    DigestMismatch { expected: String, actual: String },
    #[error("the delta upload is not one: {0}")]
    DeltaFormat(String),
    #[error("the delta upload's recipe is refused: {0}")]
    Recipe(#[from] RecipeError),
    #[error("chunk {index} of the delta upload is not the chunk its recipe names")]
    ChunkMismatch { index: usize },
    #[error(
        "the host no longer holds chunk {id} that the delta upload relies on; upload the whole artifact"
    )]
    ChunkGone { id: String },
    #[error(transparent)]
    Io(#[from] crate::fsutil::FileError),
}

impl crate::http::Refusal for ArtifactError {
    fn http_status(&self) -> u16 {
        match self {
            Self::BadDigest(_)
            | Self::NotZstd(_)
            | Self::DigestMismatch { .. }
            | Self::DeltaFormat(_)
            | Self::Recipe(_)
            | Self::ChunkMismatch { .. } => 422,
            Self::ChunkGone { .. } => 409,
            Self::Missing(_) => 404,
            Self::TooLarge => 413,
            Self::Upload { .. } => 400,
            Self::Io(_) => 500,
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + use<> {
    let e = crate::fsutil::file_error(what, path);
    move |source| ArtifactError::Io(e(source))
}

#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
}

impl ArtifactStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("artifacts"),
        }
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf, ArtifactError> {
        if !hostd_api::deploy::is_digest(digest) {
            return Err(ArtifactError::BadDigest(digest.to_owned()));
        }
        Ok(self.dir.join(format!("{digest}.tar.zst")))
    }

    /// The stored size, if the host has the artifact.
    pub fn size(&self, digest: &str) -> Result<Option<u64>, ArtifactError> {
        let path = self.path(digest)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// The tar stream of a stored artifact.
    pub fn open(&self, digest: &str) -> Result<impl Read + use<>, ArtifactError> {
        let path = self.path(digest)?;
        let file = std::fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ArtifactError::Missing(digest.to_owned())
            } else {
                io("open", &path)(e)
            }
        })?;
        zstd::Decoder::new(file).map_err(io("read", &path))
    }

    /// Stores an upload under `digest` once its content proves to have it.
    /// A broken or lying upload leaves nothing behind.
    pub async fn receive<S, E>(&self, digest: &str, body: S) -> Result<u64, ArtifactError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: Into<axum::Error>,
    {
        let dest = self.path(digest)?;
        let partial = self.partial(digest, "").await?;
        let received = write_body(&partial, body).await;
        let (p, d) = (partial.clone(), digest.to_owned());
        let checked = match received {
            Ok(_) => blocking(&partial, move || verify(&p, &d)).await,
            Err(e) => Err(e),
        };
        self.keep_or_drop(digest, &partial, &dest, checked).await
    }

    /// Stores the artifact `digest` rebuilt from a delta upload; returns
    /// the stored size. A broken or lying delta leaves nothing behind.
    pub async fn receive_delta<S, E>(&self, digest: &str, body: S) -> Result<u64, ArtifactError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: Into<axum::Error>,
    {
        let dest = self.path(digest)?;
        let delta = self.partial(digest, ".delta").await?;
        let received = write_body(&delta, body).await;
        let partial = self.partial(digest, "").await?;
        let checked = match received {
            Ok(n) => {
                let (dir, d, from, to) = (
                    self.dir.clone(),
                    digest.to_owned(),
                    delta.clone(),
                    partial.clone(),
                );
                blocking(&partial, move || assemble::assemble(&dir, &d, &from, &to))
                    .await
                    .map(|recipe| (n, recipe))
            }
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&delta).await;
        let (n, recipe) = match checked {
            Ok(r) => r,
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
        };
        tracing::info!(digest, received = n, "delta upload rebuilt");
        self.keep_or_drop(digest, &partial, &dest, Ok(recipe)).await
    }

    /// The entries of `recipe` the host would need sent for `digest`.
    pub async fn lacking(
        &self,
        digest: &str,
        recipe: &[u8],
    ) -> Result<ChunksLacking, ArtifactError> {
        self.path(digest)?;
        let recipe: Vec<Chunk> = chunks::decode(recipe)?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let dir = self.dir.clone();
        let held = blocking(&self.dir, move || chunk_index::held(&dir)).await?;
        Ok(ChunksLacking {
            lacking: chunk_index::lacking(&recipe, &held),
        })
    }

    /// A fresh file of its own for an upload in progress: two uploads of
    /// one digest at once never write into each other (the first complete
    /// one is renamed into place).
    async fn partial(&self, digest: &str, kind: &str) -> Result<PathBuf, ArtifactError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io("create", &self.dir))?;
        Ok(self.dir.join(format!(
            ".{digest}.{:016x}{kind}.partial",
            crate::random_u64()
        )))
    }

    /// Gives a checked upload its name (its chunk index first), or removes
    /// it. Returns the stored size.
    async fn keep_or_drop(
        &self,
        digest: &str,
        partial: &Path,
        dest: &Path,
        checked: Result<Vec<Chunk>, ArtifactError>,
    ) -> Result<u64, ArtifactError> {
        let stored = match checked {
            Ok(recipe) => chunk_index::write(&self.dir, digest, &recipe),
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            let _ = tokio::fs::remove_file(partial).await;
            return Err(e);
        }
        tokio::fs::rename(partial, dest)
            .await
            .map_err(io("store", dest))?;
        sync_dir(&self.dir)?;
        let n = tokio::fs::metadata(dest)
            .await
            .map_err(io("read", dest))?
            .len();
        tracing::info!(digest, bytes = n, "artifact stored");
        Ok(n)
    }

    /// Removes every artifact but those in `keep` (the ones installed
    /// releases came from, which a re-deploy may want again) and those
    /// uploaded within `grace` (a fresh upload may belong to a deploy still
    /// waiting its turn), each with its chunk index.
    pub fn prune(
        &self,
        keep: &[String],
        grace: std::time::Duration,
    ) -> Result<Vec<String>, ArtifactError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &self.dir)(e)),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("read", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(digest) = name.strip_suffix(".tar.zst") else {
                // An upload hostd died in the middle of, or the chunk
                // index of an artifact no longer there.
                let orphan = name.ends_with(".partial")
                    || name
                        .strip_suffix(".chunks")
                        .is_some_and(|d| !self.dir.join(format!("{d}.tar.zst")).exists());
                if orphan && !young(&entry, grace) {
                    std::fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
                }
                continue;
            };
            if !keep.iter().any(|k| k == digest) && !young(&entry, grace) {
                std::fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
                let index = chunk_index::sidecar(&self.dir, digest);
                let _ = std::fs::remove_file(index);
                removed.push(digest.to_owned());
            }
        }
        Ok(removed)
    }
}

/// Written within `grace` (or of unknown age).
fn young(entry: &std::fs::DirEntry, grace: std::time::Duration) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age < grace)
}

async fn write_body<S, E>(path: &Path, mut body: S) -> Result<u64, ArtifactError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: Into<axum::Error>,
{
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(io("create", path))?;
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ArtifactError::Upload {
            received,
            source: e.into(),
        })?;
        received += chunk.len() as u64;
        if received > MAX_ARTIFACT_BYTES {
            return Err(ArtifactError::TooLarge);
        }
        file.write_all(&chunk).await.map_err(io("write", path))?;
    }
    file.sync_all().await.map_err(io("sync", path))?;
    Ok(received)
}

/// Runs `f` off the runtime; a panic in it is an error about `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, ArtifactError> + Send + 'static,
) -> Result<T, ArtifactError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io("check", path)(std::io::Error::other(e.to_string()))))
}

/// Decompresses `path`, compares the sha256 of the tar with `expected`,
/// and cuts the tar into chunks for later delta uploads.
fn verify(path: &Path, expected: &str) -> Result<Vec<Chunk>, ArtifactError> {
    let file = std::fs::File::open(path).map_err(io("open", path))?;
    let decoder = zstd::Decoder::new(file).map_err(ArtifactError::NotZstd)?;
    let mut hasher = sha2::Sha256::new();
    let mut recipe = Vec::new();
    chunks::split(decoder, |c, data| {
        hasher.update(data);
        recipe.push(c);
        Ok(())
    })
    .map_err(ArtifactError::NotZstd)?;
    let actual = hex(&hasher.finalize());
    if actual == expected {
        Ok(recipe)
    } else {
        Err(ArtifactError::DigestMismatch {
            expected: expected.to_owned(),
            actual,
        })
    }
}

/// The sha256 of everything `r` yields, lowercase hex.
pub fn sha256_hex(mut r: impl Read) -> std::io::Result<String> {
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

pub use hostd_api::deploy::hex;

fn sync_dir(dir: &Path) -> Result<(), ArtifactError> {
    crate::fsutil::sync_dir(dir).map_err(io("sync", dir))
}

/// The sha256 of `data`, hex; for tests and tools.
pub fn digest_of(data: &[u8]) -> String {
    hex(&sha2::Sha256::digest(data))
}

#[cfg(test)]
mod tests;
