//! The release ledger: one JSON line per deploy or rollback of a service,
//! appended to `<state_dir>/releases/<service>.jsonl` (root-only). Lines
//! are appended whole with one write and fsynced, so a crash leaves at
//! worst a last line without its newline, which reading skips.

use std::path::Path;

use crate::state_file::{JsonLog, StateFileError};

pub use hostd_api::LedgerEntry;

pub struct Ledger {
    log: JsonLog<LedgerEntry>,
}

impl Ledger {
    pub fn new(state_dir: &Path, service: &str) -> Self {
        Self {
            log: JsonLog::new(
                state_dir.join("releases").join(format!("{service}.jsonl")),
                "release ledger",
                0o600,
            ),
        }
    }

    pub fn append(&self, entry: &LedgerEntry) -> Result<(), StateFileError> {
        self.log.append(entry)
    }

    /// Every entry, oldest first; an absent ledger is empty.
    pub fn entries(&self) -> Result<Vec<LedgerEntry>, StateFileError> {
        self.log.read()
    }

    /// The version a rollback returns to: the newest successful deploy
    /// before the current version's newest one.
    pub fn previous(&self, current: &str) -> Result<Option<String>, StateFileError> {
        let ok: Vec<LedgerEntry> = self
            .entries()?
            .into_iter()
            .filter(|e| e.result == "ok")
            .collect();
        let Some(at) = ok.iter().rposition(|e| e.version == current) else {
            return Ok(ok.last().map(|e| e.version.clone()));
        };
        Ok(ok[..at]
            .iter()
            .rev()
            .find(|e| e.version != current)
            .map(|e| e.version.clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn entry(version: &str, result: &str) -> LedgerEntry {
        LedgerEntry {
            version: version.into(),
            digest: "ab".repeat(32),
            by: "ann@laptop".into(),
            from: Some("10.0.0.9".into()),
            caller: Some("admin (uid 1000)".into()),
            action: "deploy".into(),
            started: "2026-12-02T10:00:00Z".into(),
            finished: "2026-12-02T10:00:03Z".into(),
            result: result.into(),
            error: None,
        }
    }

    #[test]
    fn appended_entries_read_back_in_order_root_only() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let l = Ledger::new(dir.path(), "api");
        assert!(l.entries()?.is_empty());
        l.append(&entry("v1", "ok"))?;
        l.append(&entry("v2", "rolled_back"))?;
        let got: Vec<String> = l.entries()?.into_iter().map(|e| e.version).collect();
        assert_eq!(got, ["v1", "v2"]);
        let mode = std::fs::metadata(dir.path().join("releases/api.jsonl"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        Ok(())
    }

    #[test]
    fn previous_is_the_last_good_release_before_the_current_one()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let l = Ledger::new(dir.path(), "api");
        for (v, r) in [
            ("v1", "ok"),
            ("v2", "ok"),
            ("v3", "rolled_back"),
            ("v3", "ok"),
        ] {
            l.append(&entry(v, r))?;
        }
        assert_eq!(l.previous("v3")?.as_deref(), Some("v2"));
        assert_eq!(l.previous("v2")?.as_deref(), Some("v1"));
        assert_eq!(l.previous("v1")?, None);
        // A current release the ledger never saw: the last good one.
        assert_eq!(l.previous("hand-made")?.as_deref(), Some("v3"));
        Ok(())
    }
}
