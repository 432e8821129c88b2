//! What the backup task knows and keeps: the last run and drill, when the
//! next is due, persisted in `<state_dir>/backup.json` so /health tells the
//! truth after a restart.

use std::time::{Duration, SystemTime};

use hostd_api::{BackupRun, DrillRun};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::state_file::JsonFile;

/// What /health, /metrics and `hostctl backups` read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupState {
    /// RFC 3339: when hostd first ran with `[backup]` (a host that never
    /// backed up is overdue `max_age` after it).
    pub configured_since: Option<String>,
    pub last_run: Option<BackupRun>,
    pub last_success: Option<String>,
    pub last_drill: Option<DrillRun>,
    pub last_drill_success: Option<String>,
    pub last_check: Option<String>,
    #[serde(skip)]
    pub running: bool,
    #[serde(skip)]
    pub next_run: Option<String>,
}

/// `<state_dir>/backup.json`: what /health says after a restart.
pub fn state_file(config: &Config) -> JsonFile<BackupState> {
    JsonFile::new(config.state_dir.join("backup.json"), "backup state")
}

pub fn save(config: &Config, st: &BackupState) {
    if let Err(e) = state_file(config).save(st) {
        tracing::warn!("{}", hostd_api::error_chain(&e));
    }
}

/// The next `at` (minutes after midnight UTC) after `now`, plus `jitter`.
pub fn next_scheduled(now: SystemTime, at_minutes: u32, jitter: Duration) -> SystemTime {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let day = secs - secs % 86_400;
    let mut due = day + u64::from(at_minutes) * 60;
    if due <= secs {
        due += 86_400;
    }
    SystemTime::UNIX_EPOCH + Duration::from_secs(due) + crate::random_delay(jitter)
}
