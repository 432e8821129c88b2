//! hostd's small durable files: one type for a JSON document replaced
//! whole (the deploy and restore markers, `desired.json`, `backup.json`)
//! and one for a log of JSON lines appended to (the release ledger, job
//! records). Both are root-only unless told otherwise and never seen half
//! written: a document is replaced atomically ([`fsutil::write_atomically`]),
//! a line is appended with one write and synced, and a torn last line left
//! by a crash is skipped on reading.

use std::io::Write;
use std::marker::PhantomData;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot {action} the {what} {path}")]
    Io {
        action: &'static str,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the {what} for {path}")]
    Encode {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Where a file is and what it is called in messages.
#[derive(Debug, Clone)]
struct Place {
    path: PathBuf,
    what: &'static str,
    mode: u32,
}

impl Place {
    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> StateFileError + use<> {
        let (what, path) = (self.what, self.path.clone());
        move |source| StateFileError::Io {
            action,
            what,
            path,
            source,
        }
    }

    fn encode(&self, source: serde_json::Error) -> StateFileError {
        StateFileError::Encode {
            what: self.what,
            path: self.path.clone(),
            source,
        }
    }

    /// The bytes, or None when there is no file.
    fn read(&self) -> Result<Option<Vec<u8>>, StateFileError> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read")(e)),
        }
    }

    fn remove(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(
                "cannot remove the {} {}: {e}",
                self.what,
                self.path.display()
            ),
        }
    }
}

/// A JSON document replaced whole.
#[derive(Debug, Clone)]
pub struct JsonFile<T> {
    place: Place,
    _of: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> JsonFile<T> {
    /// Root-only (0600): some of these sit beside secrets.
    pub fn new(path: PathBuf, what: &'static str) -> Self {
        Self {
            place: Place {
                path,
                what,
                mode: 0o600,
            },
            _of: PhantomData,
        }
    }

    pub fn path(&self) -> &Path {
        &self.place.path
    }

    /// None when there is no file. A file that does not decode is logged
    /// and taken as absent: every caller has a safe start without it, and
    /// refusing to start over a damaged file would take the host down.
    pub fn load(&self) -> Result<Option<T>, StateFileError> {
        let Some(bytes) = self.place.read()? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::error!(
                    "ignoring the unreadable {} {}: {e}",
                    self.place.what,
                    self.place.path.display()
                );
                Ok(None)
            }
        }
    }

    /// [`JsonFile::load`] for callers that treat an unreadable file as
    /// absent too (logged).
    pub fn load_or_log(&self) -> Option<T> {
        self.load().unwrap_or_else(|e| {
            tracing::error!("{}", hostd_api::error_chain(&e));
            None
        })
    }

    pub fn save(&self, value: &T) -> Result<(), StateFileError> {
        let body = serde_json::to_vec_pretty(value).map_err(|e| self.place.encode(e))?;
        fsutil::write_atomically(&self.place.path, &body, self.place.mode)
            .map_err(self.place.io("write"))
    }

    /// Gone, whether or not it was there; a failure is logged.
    pub fn clear(&self) {
        self.place.remove();
    }
}

/// A log of JSON lines, oldest first.
#[derive(Debug, Clone)]
pub struct JsonLog<T> {
    place: Place,
    _of: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> JsonLog<T> {
    pub fn new(path: PathBuf, what: &'static str, mode: u32) -> Self {
        Self {
            place: Place { path, what, mode },
            _of: PhantomData,
        }
    }

    /// One write of the whole line, then a sync: a crash leaves at worst a
    /// last line without its newline, which [`JsonLog::read`] skips.
    pub fn append(&self, entry: &T) -> Result<(), StateFileError> {
        if let Some(dir) = self.place.path.parent() {
            std::fs::create_dir_all(dir).map_err(self.place.io("create the directory of"))?;
        }
        let mut line = serde_json::to_vec(entry).map_err(|e| self.place.encode(e))?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(self.place.mode)
            .open(&self.place.path)
            .map_err(self.place.io("open"))?;
        // A line torn by a crash ends without its newline: end it first,
        // or this entry would be glued to it and skipped with it.
        let len = f.metadata().map_err(self.place.io("read"))?.len();
        if len > 0 {
            let mut last = [0u8];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut last, len - 1)
                .map_err(self.place.io("read"))?;
            if last[0] != b'\n' {
                line.insert(0, b'\n');
            }
        }
        f.write_all(&line).map_err(self.place.io("append to"))?;
        f.sync_data().map_err(self.place.io("sync"))
    }

    /// Every entry; an absent log is empty. A torn or unreadable line is
    /// skipped with a warning, never fatal.
    pub fn read(&self) -> Result<Vec<T>, StateFileError> {
        let Some(bytes) = self.place.read()? else {
            return Ok(Vec::new());
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .filter_map(|(n, l)| match serde_json::from_str(l) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(
                        file = %self.place.path.display(),
                        line = n + 1,
                        "skipping an unreadable line of the {}: {e}",
                        self.place.what
                    );
                    None
                }
            })
            .collect())
    }

    /// Replaces the whole log with `entries` (atomically), to bound it.
    pub fn rewrite(&self, entries: &[T]) -> Result<(), StateFileError> {
        let mut text = Vec::new();
        for e in entries {
            text.extend(serde_json::to_vec(e).map_err(|e| self.place.encode(e))?);
            text.push(b'\n');
        }
        fsutil::write_atomically(&self.place.path, &text, self.place.mode)
            .map_err(self.place.io("write"))
    }

    pub fn remove(&self) {
        self.place.remove();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_document_round_trips_privately_and_a_damaged_one_reads_as_absent()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = JsonFile::<Vec<u32>>::new(dir.path().join("s/x.json"), "test state");
        assert_eq!(file.load()?, None);
        file.save(&vec![1, 2])?;
        assert_eq!(file.load()?, Some(vec![1, 2]));
        let mode = std::fs::metadata(file.path())?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!fsutil::tmp_path(file.path()).exists());
        std::fs::write(file.path(), b"{ not json")?;
        assert_eq!(file.load()?, None);
        file.clear();
        file.clear();
        assert!(!file.path().exists());
        Ok(())
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_rest_read_in_order()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let log = JsonLog::<String>::new(dir.path().join("l/x.jsonl"), "test log", 0o600);
        assert!(log.read()?.is_empty());
        log.append(&"a".to_owned())?;
        log.append(&"b".to_owned())?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("l/x.jsonl"))?;
        f.write_all(b"\"tor")?;
        assert_eq!(log.read()?, ["a", "b"]);
        // The next entry after a torn line is not swallowed by it.
        log.append(&"c".to_owned())?;
        assert_eq!(log.read()?, ["a", "b", "c"]);
        log.rewrite(&["b".to_owned()])?;
        assert_eq!(log.read()?, ["b"]);
        Ok(())
    }
}
