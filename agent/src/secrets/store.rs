//! The last good set on disk (`store_dir/last-good.json`), root-only, so a
//! reboot during an SSM outage still starts services. Written atomically:
//! temporary file, fsync, rename, directory fsync; a crash leaves the old
//! file or the new one, never half of one.

use std::fs::{DirBuilder, File, Permissions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hostd_api::time::unix_ms;
use serde::{Deserialize, Serialize};

use super::set::{Secret, SecretSet, SecretValue};

const FILE: &str = "last-good.json";
const FORMAT: u32 = 1;

/// Messages name the file and the operation, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] crate::fsutil::FileError),
    /// The serde error is left out: its message can quote the input.
    #[error("{} is not a secrets store hostd can read (format {FORMAT} JSON expected)", path.display())]
    Corrupt { path: PathBuf },
    #[error("{} is readable by others than root (mode {mode:o}); refusing to trust it", path.display())]
    Exposed { path: PathBuf, mode: u32 },
}

/// On-disk form. Private, so the in-memory types cannot be serialized into
/// a response by accident.
#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    prefix: String,
    saved_at_unix: u64,
    secrets: Vec<StoredSecret>,
}

#[derive(Serialize, Deserialize)]
struct StoredSecret {
    name: String,
    value: String,
    version: i64,
    last_modified_unix_ms: Option<u64>,
}

/// The store in one directory, for one prefix.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    prefix: String,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            prefix: prefix.into(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The last saved set, None when there is none yet or it was saved for
    /// another prefix (the configuration changed: those are not ours now).
    pub fn load(&self) -> Result<Option<SecretSet>, StoreError> {
        let path = self.path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io("open", &path, source)),
        };
        let mode = file.metadata().map_err(|e| io("stat", &path, e))?.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Exposed { path, mode });
        }
        let stored: Stored = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|_| StoreError::Corrupt { path: path.clone() })?;
        if stored.format != FORMAT {
            return Err(StoreError::Corrupt { path });
        }
        if stored.prefix != self.prefix {
            tracing::warn!(
                path = %path.display(),
                stored = %stored.prefix,
                configured = %self.prefix,
                "the stored secrets are for another prefix; ignoring them"
            );
            return Ok(None);
        }
        Ok(Some(
            stored
                .secrets
                .into_iter()
                .map(|s| Secret {
                    name: s.name,
                    value: SecretValue::new(s.value),
                    version: s.version,
                    last_modified: s
                        .last_modified_unix_ms
                        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
                })
                .collect(),
        ))
    }

    /// Replace the stored set atomically. The directory is made (or
    /// narrowed to) 0700 and the file is 0600 from its creation on.
    pub fn save(&self, set: &SecretSet) -> Result<(), StoreError> {
        let dir = &self.dir;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("create", dir, e))?;
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))
            .map_err(|e| io("restrict", dir, e))?;
        let stored = Stored {
            format: FORMAT,
            prefix: self.prefix.clone(),
            saved_at_unix: unix_ms(SystemTime::now()) / 1000,
            secrets: set
                .iter()
                .map(|s| StoredSecret {
                    name: s.name.clone(),
                    value: s.value.expose().to_owned(),
                    version: s.version,
                    last_modified_unix_ms: s.last_modified.map(unix_ms),
                })
                .collect(),
        };
        let bytes =
            serde_json::to_vec(&stored).map_err(|_| StoreError::Corrupt { path: self.path() })?;
        let path = self.path();
        crate::fsutil::write_atomically(&path, &bytes, 0o600).map_err(|e| io("replace", &path, e))
    }
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io(crate::fsutil::file_error(what, path)(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> SecretSet {
        [Secret {
            name: "db/password".into(),
            value: SecretValue::new("hunter2".into()),
            version: 4,
            last_modified: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
        }]
        .into_iter()
        .collect()
    }

    #[test]
    fn round_trip_with_root_only_modes() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("secrets");
        let store = Store::new(&dir, "/app/prod/");
        assert!(store.load()?.is_none());
        store.save(&set())?;
        assert_eq!(std::fs::metadata(&dir)?.mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(store.path())?.mode() & 0o777, 0o600);
        assert!(!crate::fsutil::tmp_path(&dir.join(FILE)).exists());
        assert_eq!(store.load()?, Some(set()));
        // Saved again over the old one.
        store.save(&SecretSet::new())?;
        assert_eq!(store.load()?, Some(SecretSet::new()));
        Ok(())
    }

    #[test]
    fn another_prefix_is_not_loaded() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        Store::new(tmp.path(), "/app/prod/").save(&set())?;
        assert!(Store::new(tmp.path(), "/app/staging/").load()?.is_none());
        Ok(())
    }

    #[test]
    fn corrupt_or_exposed_files_are_refused_without_quoting_them()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let store = Store::new(tmp.path(), "/app/prod/");
        let path = store.path();
        std::fs::write(&path, "{\"format\":1,\"prefix\":\"hunter2")?;
        std::fs::set_permissions(&path, Permissions::from_mode(0o600))?;
        let e = store
            .load()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a secrets store"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        store.save(&set())?;
        std::fs::set_permissions(&path, Permissions::from_mode(0o644))?;
        assert!(matches!(store.load(), Err(StoreError::Exposed { .. })));
        Ok(())
    }
}
