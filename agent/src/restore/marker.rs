//! A restore in progress, written to `<state_dir>/restore.json` before
//! anything is stopped. If hostd dies mid-restore, the next hostd finds it
//! and puts the host back: staging copies (never live) removed, the
//! services the restore stopped started again. The live data is the old
//! data unless the swap had begun, and the swap of each piece is atomic
//! (see [`super::sequence::recover`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::swap::{Piece, RedisRdb};
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
    /// Which of `paths` is Redis's RDB (swapped with Redis stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisRdb>,
    /// How many pieces of [`Marker::pieces`] had begun their swap: only
    /// those are swapped back by a recovery.
    #[serde(default)]
    pub swapped: usize,
}

impl Marker {
    /// The pieces in the order of the swap, as
    /// [`super::sequence::Pieces::order`] has them.
    pub fn pieces(&self) -> Vec<Piece> {
        let rdb = self.redis.as_ref().map(|r| &r.rdb);
        let databases = self.databases.iter().cloned().map(Piece::Database);
        let redis = self.redis.iter().cloned().map(Piece::Redis);
        let files = self
            .paths
            .iter()
            .filter(|p| Some(*p) != rdb)
            .cloned()
            .map(Piece::Path);
        databases.chain(redis).chain(files).collect()
    }
}

/// `<state_dir>/restore.json`.
pub fn file(state_dir: &Path) -> JsonFile<Marker> {
    JsonFile::new(state_dir.join("restore.json"), "restore marker")
}
