//! Uploaded artifacts, by content: `<state_dir>/artifacts/<sha256>.tar.zst`,
//! root-only. The name is the sha256 of the uncompressed tar, checked
//! before the file gets that name, so a name always tells the truth and a
//! repeat deploy of the same build needs no upload.

use std::io::Read;
use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

/// Larger uploads are refused as they arrive (compressed bytes).
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;

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
    #[error(transparent)]
    Io(#[from] crate::fsutil::FileError),
}

impl crate::http::Refusal for ArtifactError {
    fn http_status(&self) -> u16 {
        match self {
            Self::BadDigest(_) | Self::NotZstd(_) | Self::DigestMismatch { .. } => 422,
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
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io("create", &self.dir))?;
        // Its own file: two uploads of one digest at once never write into
        // each other (the first complete one is renamed into place).
        let partial = self
            .dir
            .join(format!(".{digest}.{:016x}.partial", crate::random_u64()));
        let received = write_body(&partial, body).await;
        let verified = match received {
            Ok(n) => {
                let (p, d) = (partial.clone(), digest.to_owned());
                tokio::task::spawn_blocking(move || verify(&p, &d))
                    .await
                    .unwrap_or_else(|e| {
                        Err(io("verify", &partial)(std::io::Error::other(e.to_string())))
                    })
                    .map(|()| n)
            }
            Err(e) => Err(e),
        };
        match verified {
            Ok(n) => {
                tokio::fs::rename(&partial, &dest)
                    .await
                    .map_err(io("store", &dest))?;
                sync_dir(&self.dir)?;
                tracing::info!(digest, bytes = n, "artifact stored");
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(e)
            }
        }
    }

    /// Removes every artifact but those in `keep` (the ones installed
    /// releases came from, which a re-deploy may want again).
    /// Removes every artifact but `keep`'s, except those uploaded within
    /// `grace`: a fresh upload may belong to a deploy still waiting its turn.
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
                // An upload hostd died in the middle of.
                if name.ends_with(".partial") && !young(&entry, grace) {
                    std::fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
                }
                continue;
            };
            if !keep.iter().any(|k| k == digest) && !young(&entry, grace) {
                std::fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
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

/// Decompresses `path` and compares the sha256 of the tar with `expected`.
fn verify(path: &Path, expected: &str) -> Result<(), ArtifactError> {
    let file = std::fs::File::open(path).map_err(io("open", path))?;
    let decoder = zstd::Decoder::new(file).map_err(ArtifactError::NotZstd)?;
    let actual = sha256_hex(decoder).map_err(ArtifactError::NotZstd)?;
    if actual == expected {
        Ok(())
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sync_dir(dir: &Path) -> Result<(), ArtifactError> {
    crate::fsutil::sync_dir(dir).map_err(io("sync", dir))
}

/// The sha256 of `data`, hex; for tests and tools.
pub fn digest_of(data: &[u8]) -> String {
    hex(&sha2::Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(
        data: &[u8],
    ) -> futures_util::stream::Iter<std::vec::IntoIter<Result<bytes::Bytes, axum::Error>>> {
        let chunks: Vec<Result<bytes::Bytes, axum::Error>> = data
            .chunks(1000)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        futures_util::stream::iter(chunks)
    }

    #[tokio::test]
    async fn an_upload_is_stored_only_under_its_true_digest()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = ArtifactStore::new(dir.path());
        let tar = b"pretend this is a tar".repeat(500);
        let digest = digest_of(&tar);
        let compressed = zstd::encode_all(&tar[..], 3)?;

        let wrong = digest_of(b"something else");
        let err = store.receive(&wrong, upload(&compressed)).await;
        assert!(
            matches!(err, Err(ArtifactError::DigestMismatch { .. })),
            "{err:?}"
        );
        assert_eq!(store.size(&wrong)?, None);

        let err = store.receive(&digest, upload(&tar)).await;
        assert!(matches!(err, Err(ArtifactError::NotZstd(_))), "{err:?}");
        assert_eq!(store.size(&digest)?, None);

        let n = store.receive(&digest, upload(&compressed)).await?;
        assert_eq!(store.size(&digest)?, Some(n));
        let mut back = Vec::new();
        store.open(&digest)?.read_to_end(&mut back)?;
        assert_eq!(back, tar);
        // Nothing but the artifact is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path().join("artifacts"))?.count(), 1);

        let grace = std::time::Duration::from_secs(3600);
        assert_eq!(
            store.prune(std::slice::from_ref(&digest), std::time::Duration::ZERO)?,
            Vec::<String>::new()
        );
        assert_eq!(store.prune(&[], grace)?, Vec::<String>::new());
        assert_eq!(
            store.prune(&[], std::time::Duration::ZERO)?,
            vec![digest.clone()]
        );
        assert_eq!(store.size(&digest)?, None);
        Ok(())
    }

    #[tokio::test]
    async fn two_uploads_of_one_digest_at_once_store_it_whole()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = ArtifactStore::new(dir.path());
        let tar = b"the same build uploaded twice".repeat(4000);
        let digest = digest_of(&tar);
        let compressed = zstd::encode_all(&tar[..], 3)?;
        let (a, b) = tokio::join!(
            store.receive(&digest, upload(&compressed)),
            store.receive(&digest, upload(&compressed))
        );
        assert_eq!(a?, b?);
        let mut back = Vec::new();
        store.open(&digest)?.read_to_end(&mut back)?;
        assert_eq!(back, tar);
        assert_eq!(std::fs::read_dir(dir.path().join("artifacts"))?.count(), 1);
        Ok(())
    }

    #[test]
    fn names_must_be_digests() {
        let store = ArtifactStore::new(Path::new("/nonexistent"));
        assert!(matches!(
            store.path("../../etc/passwd"),
            Err(ArtifactError::BadDigest(_))
        ));
        assert!(matches!(
            store.open(&"0".repeat(64)),
            Err(ArtifactError::Missing(_))
        ));
    }
}
