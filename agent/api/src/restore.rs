//! Restores on the wire: `POST /v1/restore` answers with a stream of
//! [`RestoreEvent`]s, one JSON document per line (NDJSON), ending with
//! `finished`. hostd owns the restore once it has started: a client that
//! goes away does not stop it halfway.

use serde::{Deserialize, Serialize};

use crate::backup::{BackupKind, SnapshotInfo};

/// `POST /v1/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// `latest`, or a snapshot id (or a unique prefix of one, 8 characters
    /// at least): the backup run that wrote it is restored.
    pub snapshot: String,
    /// Only these kinds; empty: every kind the run holds.
    #[serde(default)]
    pub only: Vec<BackupKind>,
    /// Resolve and answer with the plan; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Who asks (`user@machine`), for the operations lock.
    #[serde(default)]
    pub requested_by: String,
    /// The snapshot ids of the plan the operator confirmed: hostd refuses
    /// (409, nothing changed) when its plan now differs, e.g. a backup
    /// ended in between. Empty: no check.
    #[serde(default)]
    pub confirmed: Vec<String>,
    /// How long to wait for the host's operations lock, in seconds
    /// (0: fail at once when it is held).
    #[serde(default)]
    pub lock_wait_seconds: u64,
}

/// What a restore will do, sent first (and alone, for a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// Snapshots restored, one per database, Redis and the paths.
    pub snapshots: Vec<SnapshotInfo>,
    /// App services stopped for the restore and started after it.
    pub stop: Vec<String>,
    /// The server services restarted to load restored data (Redis).
    pub restart: Vec<String>,
    /// What the operator should know before confirming: parts the last
    /// backup run could not back up, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One line of the restore stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RestoreEvent {
    Plan {
        plan: RestorePlan,
        dry_run: bool,
    },
    /// The operations lock is held; waiting for it.
    Waiting {
        holder: String,
    },
    /// A step began (`stop api`, `restore postgres api`, `swap`...).
    Step {
        step: String,
    },
    /// Bytes of a long step done so far, of `total` when known.
    Progress {
        step: String,
        bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// A step ended.
    StepDone {
        step: String,
        seconds: f64,
    },
    /// The last line. `error` says why it failed and what state the host
    /// is in (a failure before the swap changed nothing).
    Finished {
        ok: bool,
        seconds: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_lines() -> Result<(), serde_json::Error> {
        let e = RestoreEvent::Progress {
            step: "restore postgres api".into(),
            bytes: 10,
            total: None,
        };
        let line = serde_json::to_string(&e)?;
        assert_eq!(
            line,
            r#"{"event":"progress","step":"restore postgres api","bytes":10}"#
        );
        let back: RestoreEvent = serde_json::from_str(&line)?;
        assert_eq!(back, e);
        let req: RestoreRequest = serde_json::from_str(r#"{"snapshot":"latest"}"#)?;
        assert!(req.only.is_empty() && !req.dry_run && req.lock_wait_seconds == 0);
        Ok(())
    }
}
