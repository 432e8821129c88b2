//! Where restic keeps each file of a repository below a key prefix:
//! `config`, `keys/ID`, `snapshots/ID`, `index/ID` and `data/XX/ID` (XX: the
//! first two hex digits of the ID, restic's default layout, which rustic's
//! own backends also use). restic's `locks/` is never read or written:
//! rustic_core does not lock.

use rustic_core::{FileType, Id};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid repository location s3://{bucket}/{prefix}: {reason}")]
pub struct BadLocation {
    pub bucket: String,
    pub prefix: String,
    pub reason: &'static str,
}

/// The key prefix, normalised: empty, or non-empty segments each followed
/// by one `/`, so `restic -r s3:HOST/BUCKET/PREFIX` names the same objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Prefix(String);

impl Prefix {
    pub(super) fn new(bucket: &str, raw: &str) -> Result<Self, BadLocation> {
        let bad = |reason| BadLocation {
            bucket: bucket.to_owned(),
            prefix: raw.to_owned(),
            reason,
        };
        if bucket.is_empty() || bucket.contains('/') {
            return Err(bad("the bucket name must be non-empty and without '/'"));
        }
        let trimmed = raw.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Self(String::new()));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(bad("control characters in the prefix"));
        }
        if trimmed.split('/').any(|s| matches!(s, "" | "." | "..")) {
            return Err(bad("empty, '.' or '..' segments in the prefix"));
        }
        Ok(Self(format!("{trimmed}/")))
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    pub(super) fn key(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        let hex = hex.as_str();
        match tpe {
            FileType::Config => format!("{}config", self.0),
            FileType::Pack => format!("{}data/{}/{hex}", self.0, hex.get(..2).unwrap_or("")),
            FileType::Key | FileType::Snapshot | FileType::Index => {
                format!("{}{}/{hex}", self.0, tpe.dirname())
            }
        }
    }

    /// Where objects of a type are listed from.
    pub(super) fn dir(&self, tpe: FileType) -> String {
        format!("{}{}/", self.0, tpe.dirname())
    }

    /// The id of a listed key, if the key is exactly where the layout puts
    /// that id. Anything else (a stray object, an uppercase spelling, a pack
    /// in the wrong subdirectory) would be read back from the wrong key, so
    /// it is not part of the repository.
    pub(super) fn id_of(&self, tpe: FileType, key: &str) -> Option<Id> {
        let id: Id = key
            .strip_prefix(&self.dir(tpe))?
            .rsplit('/')
            .next()?
            .parse()
            .ok()?;
        (self.key(tpe, &id) == key).then_some(id)
    }
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
