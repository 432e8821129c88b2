//! Backups on the wire: `GET /v1/backups` lists the repository's snapshots
//! and the last run and drill; `POST /v1/backups` starts a backup now.

use serde::{Deserialize, Serialize};

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// `pg_dump -Fc -Z0` of one database, as the file `/postgres/<db>.dump`.
    Postgres,
    /// Redis's RDB snapshot, as the file `/redis/dump.rdb`.
    Redis,
    /// The configured paths, as they are on the host.
    Files,
}

impl BackupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Files => "files",
        }
    }
}

/// One snapshot in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The full hex id (restic shows the first 8 characters).
    pub id: String,
    /// RFC 3339.
    pub time: String,
    pub kind: BackupKind,
    pub host: String,
    /// The release that was live (`current` of the API), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// For postgres: the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// Bytes read from the source.
    pub size: u64,
    /// Bytes this snapshot added to the repository, after deduplication and
    /// compression.
    pub added: u64,
}

/// One backup run: every kind, one after the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRun {
    /// `schedule` or `manual`.
    pub trigger: String,
    /// RFC 3339.
    pub started: String,
    /// None while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// None while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// Why it failed (names the step; never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What a failed run could not back up (`postgres api`, `redis`,
    /// `files`): the rest was backed up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
    /// Snapshots this run wrote.
    pub snapshots: Vec<SnapshotInfo>,
}

/// One restore drill: the newest PostgreSQL dump restored into a scratch
/// database and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRun {
    /// RFC 3339.
    pub started: String,
    pub finished: String,
    pub ok: bool,
    /// The snapshot restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub database: String,
    /// Verification queries run and passed.
    pub checks_passed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/backups`. 404 with an ErrorBody when `[backup]` is not configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupsList {
    /// `s3://bucket/prefix`.
    pub repository: String,
    /// Oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<BackupRun>,
    /// The last successful run, when the last one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillRun>,
    /// RFC 3339: when the next scheduled backup is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
}

/// `POST /v1/backups`. With `wait`, the answer comes when the run ends
/// (200 with the run, `ok` true or false); without, at once (202 with the
/// run as started). A run already going is joined, never doubled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRequest {
    #[serde(default)]
    pub wait: bool,
}
