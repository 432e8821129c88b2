//! The desired state on disk: written atomically (temporary file, fsync,
//! rename) so a crash or power loss leaves the old or the new state, never
//! half of one. Root-only: it will sit beside secrets later.

use std::path::{Path, PathBuf};

use crate::desired::DesiredState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write the desired state to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the desired state from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("desired.json"),
        }
    }

    /// None when there is no saved state yet. A file that does not parse is
    /// logged and ignored: the config's defaults are a safe start, and
    /// refusing to start would take every service down with it.
    pub fn load(&self) -> Result<Option<DesiredState>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        match serde_json::from_str(&text) {
            Ok(state) => Ok(Some(state)),
            Err(e) => {
                tracing::error!(path = %self.path.display(), "ignoring unreadable desired state: {e}");
                Ok(None)
            }
        }
    }

    pub fn save(&self, state: &DesiredState) -> Result<(), StoreError> {
        let err = |source| StoreError::Write {
            path: self.path.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(state).map_err(|e| err(e.into()))?;
        crate::fsutil::write_atomically(&self.path, &body, 0o600).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::DesiredService;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_is_private_and_atomic() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::new(dir.path());
        assert_eq!(store.load()?, None);
        let mut state = DesiredState::default();
        state.services.insert(
            "api".into(),
            DesiredService {
                running: true,
                instances: Some(3),
            },
        );
        store.save(&state)?;
        assert_eq!(store.load()?, Some(state));
        let mode = std::fs::metadata(dir.path().join("desired.json"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!crate::fsutil::tmp_path(&dir.path().join("desired.json")).exists());
        Ok(())
    }

    #[test]
    fn corrupt_file_falls_back_to_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("desired.json"), b"{ not json")?;
        assert_eq!(Store::new(dir.path()).load()?, None);
        Ok(())
    }
}
