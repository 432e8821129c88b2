//! The repository work of a backup, all synchronous (rustic_core): write a
//! snapshot from a command's output or from paths, forget and prune by
//! policy, check, list, and read one file back. Callers are on a blocking
//! thread.

use std::path::PathBuf;
use std::process::Command;

use hostd_api::{BackupKind, SnapshotInfo};
use rustic_core::repofile::SnapshotFile;
use rustic_core::{
    BackupOptions, CheckOptions, ForgetGroups, Grouped, IndexedIdsStatus, KeepOptions, Open,
    ParentOptions, PathList, PruneOptions, Repository, SnapshotGroupCriterion, SnapshotOptions,
};

use super::source::CommandSource;
use crate::config::KeepPolicy;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `detail` is rustic_core's or the command's own text: neither carries
    /// the repository password (it never reaches either as text).
    #[error("{step} failed: {detail}")]
    Step { step: String, detail: String },
}

fn step(step: impl Into<String>) -> impl FnOnce(Box<rustic_core::RusticError>) -> EngineError {
    let step = step.into();
    move |e| EngineError::Step {
        step,
        detail: e.display_log(),
    }
}

/// What every snapshot of one run is tagged with.
#[derive(Debug, Clone)]
pub struct Labels {
    pub host: String,
    /// The release live when the backup ran.
    pub release: Option<String>,
    /// When the run started (RFC 3339): ties its snapshots together, so
    /// `hostctl restore ID` restores the run that wrote ID.
    pub run: String,
}

impl Labels {
    fn snapshot(
        &self,
        kind: BackupKind,
        database: Option<&str>,
    ) -> Result<SnapshotFile, EngineError> {
        let mut tags = vec!["hostd".to_owned(), format!("kind={}", kind.as_str())];
        tags.extend(database.map(|d| format!("db={d}")));
        tags.extend(self.release.as_ref().map(|r| format!("release={r}")));
        tags.push(format!("run={}", self.run));
        SnapshotOptions::default()
            .host(Some(self.host.clone()))
            .command(Some(format!("hostd backup {}", kind.as_str())))
            .add_tags(&tags.join(","))
            .and_then(|o| o.to_snapshot())
            .map_err(step("labelling the snapshot"))
    }
}

/// `file` (e.g. `api.dump`) is the command's whole output. A command that
/// fails leaves no snapshot: the one rustic saved is deleted again.
pub fn backup_command(
    repo: &Repository<IndexedIdsStatus>,
    labels: &Labels,
    kind: BackupKind,
    database: Option<&str>,
    file: &str,
    what: &str,
    command: Command,
) -> Result<SnapshotFile, EngineError> {
    let source = CommandSource::spawn(file, what, command).map_err(|e| EngineError::Step {
        step: format!("starting {what}"),
        detail: e.to_string(),
    })?;
    // The parent is the last snapshot of the same paths: nothing else to
    // compare a stream with, and it lets dedup statistics say what is new.
    let opts = BackupOptions::default().parent_opts(ParentOptions::default().force(true));
    let snap = labels.snapshot(kind, database)?;
    let saved = repo
        .archive(&opts, &source, snap, &[PathBuf::from(file)])
        .map_err(step(format!("writing {what} to the repository")));
    let failure = source.failure();
    let saved = match (saved, failure) {
        (Ok(s), None)
            if s.summary
                .as_ref()
                .is_some_and(|s| s.total_files_processed == 1) =>
        {
            return Ok(s);
        }
        (Ok(s), failure) => {
            let _ = repo.delete_snapshots(&[s.id]);
            failure.unwrap_or_else(|| format!("{what} produced no complete file"))
        }
        (Err(e), Some(failure)) => format!("{failure} ({e})"),
        (Err(e), None) => return Err(e),
    };
    Err(EngineError::Step {
        step: what.to_owned(),
        detail: saved,
    })
}

pub fn backup_paths(
    repo: &Repository<IndexedIdsStatus>,
    labels: &Labels,
    kind: BackupKind,
    paths: &[PathBuf],
) -> Result<SnapshotFile, EngineError> {
    let sources = PathList::from_iter(paths.iter().cloned())
        .sanitize()
        .map_err(|e| EngineError::Step {
            step: "reading the backup paths".into(),
            detail: e.to_string(),
        })?;
    let snap = labels.snapshot(kind, None)?;
    repo.backup(&BackupOptions::default(), &sources, snap)
        .map_err(step(format!("backing up {}", kind.as_str())))
}

/// Forget what `keep` no longer keeps (per host, kind and database: the
/// groups restic would form by host and paths), then prune. Returns how
/// many snapshots were forgotten.
pub fn forget_and_prune<S: Open>(
    repo: &Repository<S>,
    keep: &KeepPolicy,
) -> Result<usize, EngineError> {
    let snaps = repo
        .get_all_snapshots()
        .map_err(step("listing snapshots"))?;
    let grouped = Grouped::from_items(snaps, SnapshotGroupCriterion::default());
    let keep = KeepOptions::default()
        .keep_daily(i32::try_from(keep.daily).unwrap_or(i32::MAX))
        .keep_weekly(i32::try_from(keep.weekly).unwrap_or(i32::MAX))
        .keep_monthly(i32::try_from(keep.monthly).unwrap_or(i32::MAX));
    let ids = ForgetGroups::from_grouped_snapshots_with_retention(
        grouped,
        &keep,
        &rustic_core::jiff::Zoned::now(),
    )
    .map_err(step("applying the retention policy"))?
    .into_forget_ids();
    if ids.is_empty() {
        return Ok(0);
    }
    repo.delete_snapshots(&ids)
        .map_err(step("forgetting snapshots"))?;
    let opts = PruneOptions::default();
    let plan = repo.prune_plan(&opts).map_err(step("planning the prune"))?;
    repo.prune(&opts, plan).map_err(step("pruning"))?;
    Ok(ids.len())
}

/// `check`, reading `subset` of the pack files (`5%`). Errors only at
/// error level fail it; warnings are logged by rustic.
pub fn check<S: Open>(repo: &Repository<S>, subset: &str) -> Result<(), EngineError> {
    let subset: rustic_core::ReadSubsetOption = subset.parse().map_err(|_| EngineError::Step {
        step: "check".into(),
        detail: format!("`{subset}` is not a read subset"),
    })?;
    let results = repo
        .check(
            CheckOptions::default()
                .read_data(true)
                .read_data_subset(subset),
        )
        .map_err(step("check"))?;
    results.is_ok().map_err(step("check"))
}

/// Every snapshot hostd wrote, oldest first.
pub fn snapshots<S: Open>(repo: &Repository<S>) -> Result<Vec<SnapshotInfo>, EngineError> {
    let mut all: Vec<SnapshotInfo> = repo
        .get_all_snapshots()
        .map_err(step("listing snapshots"))?
        .iter()
        .filter_map(info)
        .collect();
    all.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(all)
}

/// The wire view of a snapshot; None for one hostd did not write.
pub fn info(s: &SnapshotFile) -> Option<SnapshotInfo> {
    let tag = |key: &str| {
        s.tags
            .iter()
            .find_map(|t| t.strip_prefix(key).map(str::to_owned))
    };
    let kind = match tag("kind=")?.as_str() {
        "postgres" => BackupKind::Postgres,
        "redis" => BackupKind::Redis,
        "files" => BackupKind::Files,
        _ => return None,
    };
    let summary = s.summary.clone().unwrap_or_default();
    Some(SnapshotInfo {
        id: s.id.to_hex().to_string(),
        time: s.time.timestamp().to_string(),
        kind,
        host: s.hostname.clone(),
        release: tag("release="),
        database: tag("db="),
        paths: s.paths.iter().cloned().collect(),
        tags: s.tags.iter().cloned().collect(),
        size: summary.total_bytes_processed,
        added: summary.data_added_packed,
    })
}
