//! A restore in progress, written to `<state_dir>/restore.json` before
//! anything is stopped. If hostd dies mid-restore, the next hostd finds it
//! and puts the host back: staging copies (never live) removed, the
//! services the restore stopped started again. The live data is the old
//! data unless the swap had begun, and the swap of each piece is atomic.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manager::ManagerHandle;
use crate::state_file::JsonFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Restoring into staging copies; the live data untouched.
    Staging,
    /// Staging copies being swapped in; previous copies kept.
    Swapping,
    /// Everything swapped; services starting.
    Starting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub started: String,
    pub requested_by: String,
    pub phase: Phase,
    /// Services to start again (app services, then the Redis service).
    pub stopped: Vec<String>,
    pub databases: Vec<String>,
    /// Live paths restored (files, and Redis's RDB).
    pub paths: Vec<PathBuf>,
}

/// `<state_dir>/restore.json`.
pub fn file(state_dir: &Path) -> JsonFile<Marker> {
    JsonFile::new(state_dir.join("restore.json"), "restore marker")
}

/// At start: finishes what an interrupted restore left. Runs in the
/// background; each step is logged and a failing one does not stop the
/// next.
pub async fn recover(state_dir: PathBuf, admin: String, manager: ManagerHandle) {
    let marker = file(&state_dir);
    let Some(m) = marker.load_or_log() else {
        return;
    };
    tracing::warn!(
        started = m.started,
        phase = ?m.phase,
        "a restore was interrupted (hostd stopped mid-restore); putting the host back"
    );
    if m.phase == Phase::Staging {
        let (databases, live_paths) = (m.databases.clone(), m.paths.clone());
        let cleaned = tokio::task::spawn_blocking(move || {
            super::run::drop_copies(super::run::Copies::Staged, &admin, &databases, &live_paths);
        })
        .await;
        if cleaned.is_err() {
            tracing::error!("the clean-up thread of the interrupted restore failed");
        }
    } else {
        tracing::warn!(
            "the swap had begun: previous copies (hostd_pre_restore_*, *.hostd-pre-restore) are kept for the operator"
        );
    }
    for service in &m.stopped {
        match manager
            .action(service.clone(), hostd_api::ServiceAction::Start)
            .await
        {
            Ok(_) => tracing::info!(service, "started again after the interrupted restore"),
            Err(e) => tracing::error!(service, "cannot start after the interrupted restore: {e}"),
        }
    }
    marker.clear();
}
