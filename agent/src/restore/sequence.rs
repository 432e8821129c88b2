//! The order of a restore, and of its recovery, over a narrow seam
//! ([`super::seam`]): app
//! services stopped → every piece staged beside the live one → swapped in
//! (renames) → services started → previous copies dropped. A failure
//! before the swap changes nothing; the marker, saved before anything
//! stops, lets the next hostd put the host back if this one dies. The
//! live seam is PostgreSQL, the files and the service manager
//! ([`super::live`]); the unit tests use a fake.

use std::path::PathBuf;

use hostd_api::time::now_rfc3339;

use super::events::Events;
use super::marker::{Marker, Phase};
use super::seam::{Copies, RestoreHost, StageError};
use super::swap::{self, Piece, RedisRdb, SwapFailure};
use crate::manager::ManagerError;
use crate::state_file::{JsonFile, StateFileError};

/// How a restore failed, phrased for the operator: what happened to the
/// live data is part of the message.
#[derive(Debug, thiserror::Error)]
pub enum RestoreFailure {
    #[error("cannot record the restore: {}", hostd_api::error_chain(.0))]
    Marker(StateFileError),
    #[error("the backup run in progress did not finish; nothing changed")]
    BackupBusy,
    #[error("cannot stop {service}: {source}; nothing changed")]
    Stop {
        service: String,
        source: ManagerError,
    },
    #[error("{}; nothing changed: the live data is as it was", hostd_api::error_chain(.0))]
    Stage(StageError),
    #[error("{}", swap_failure_text(.0))]
    Swap(SwapFailure),
    #[error(
        "the data is restored, but {service} did not start healthy: {source}. The data from before \
         the restore is kept (hostd_pre_restore_* databases, *.hostd-pre-restore paths)"
    )]
    Start {
        service: String,
        source: ManagerError,
    },
}

fn swap_failure_text(f: &SwapFailure) -> String {
    let failed = format!(
        "swapping the restored {} in failed: {}",
        f.piece,
        hostd_api::error_chain(&f.error)
    );
    if f.stuck.is_empty() {
        format!("{failed}; what was already swapped was swapped back: the live data is as it was")
    } else {
        format!(
            "{failed}; and these could not be swapped back, so they hold the restored data: {}. \
             Their data from before the restore is kept (hostd_pre_restore_* databases, \
             *.hostd-pre-restore paths), and so are the restored copies (hostd_restore_*, *.hostd-restore)",
            f.stuck.join("; ")
        )
    }
}

/// What a restore puts back, resolved from its plan.
#[derive(Debug, Clone, Default)]
pub struct Pieces {
    /// App services stopped while the data is replaced.
    pub stop: Vec<String>,
    pub databases: Vec<String>,
    pub redis: Option<RedisRdb>,
    pub files: Vec<PathBuf>,
}

impl Pieces {
    /// Every live path restored (files, and Redis's RDB).
    pub fn live_paths(&self) -> Vec<PathBuf> {
        let mut paths = self.files.clone();
        paths.extend(self.redis.as_ref().map(|r| r.rdb.clone()));
        paths
    }

    /// The order of the swap: databases, Redis, files.
    pub fn order(&self) -> Vec<Piece> {
        let databases = self.databases.iter().cloned().map(Piece::Database);
        let redis = self.redis.iter().cloned().map(Piece::Redis);
        let files = self.files.iter().cloned().map(Piece::Path);
        databases.chain(redis).chain(files).collect()
    }
}

/// Runs the restore to the end of the services' start. Ok: the previous
/// copies are still there for the caller to drop once it has said so.
pub async fn run<H: RestoreHost>(
    host: &H,
    pieces: &Pieces,
    requested_by: &str,
    marker: &JsonFile<Marker>,
    ev: &Events,
) -> Result<(), RestoreFailure> {
    let mut m = Marker {
        started: now_rfc3339(),
        requested_by: requested_by.to_owned(),
        phase: Phase::Staging,
        stopped: pieces.stop.clone(),
        databases: pieces.databases.clone(),
        paths: pieces.live_paths(),
        redis: pieces.redis.clone(),
        swapped: 0,
    };
    marker.save(&m).map_err(RestoreFailure::Marker)?;
    let mut stopped = Vec::new();
    for s in &pieces.stop {
        let step = format!("stop {s}");
        let t = ev.step(&step);
        if let Err(source) = host.stop(s).await {
            start_again(host, &stopped).await;
            marker.clear();
            return Err(RestoreFailure::Stop {
                service: s.clone(),
                source,
            });
        }
        stopped.push(s.clone());
        ev.done(&step, t);
    }
    let staged = match host.stage(ev).await {
        Ok(()) => super::faults::at("staged").await.map_err(StageError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = staged {
        host.drop_copies(Copies::Staged, &pieces.databases, &pieces.live_paths())
            .await;
        start_again(host, &stopped).await;
        marker.clear();
        return Err(RestoreFailure::Stage(e));
    }
    m.phase = Phase::Swapping;
    // Redis is stopped for its swap: if hostd dies before it is started
    // again, the recovery must start it too.
    if let Some(r) = &pieces.redis
        && !m.stopped.contains(&r.service)
    {
        m.stopped.push(r.service.clone());
    }
    // Recorded before the first swap or no swap at all: a recovery that
    // believed the swap never began would leave a half-swapped host.
    if let Err(e) = marker.save(&m) {
        host.drop_copies(Copies::Staged, &pieces.databases, &pieces.live_paths())
            .await;
        start_again(host, &stopped).await;
        marker.clear();
        return Err(RestoreFailure::Marker(e));
    }
    let t = ev.step("swap");
    let begin = |n: usize| {
        m.swapped = n;
        marker.save(&m)
    };
    if let Err(failure) = swap::swap_all(host, &pieces.order(), begin).await {
        // A piece that could not be swapped back may hold its only copy
        // of either side under a staged name: nothing is dropped then.
        if failure.stuck.is_empty() {
            host.drop_copies(Copies::Staged, &pieces.databases, &pieces.live_paths())
                .await;
        }
        start_again(host, &stopped).await;
        marker.clear();
        return Err(RestoreFailure::Swap(failure));
    }
    ev.done("swap", t);
    m.phase = Phase::Starting;
    save_phase(marker, &m);
    for s in &stopped {
        let step = format!("start {s}");
        let t = ev.step(&step);
        if let Err(source) = host.start(s).await {
            marker.clear();
            return Err(RestoreFailure::Start {
                service: s.clone(),
                source,
            });
        }
        ev.done(&step, t);
    }
    marker.clear();
    Ok(())
}

/// The Starting phase unrecorded, a recovery swaps a whole restore back:
/// still every kind on one side, so logged, not fatal.
fn save_phase(marker: &JsonFile<Marker>, m: &Marker) {
    if let Err(e) = marker.save(m) {
        tracing::warn!("{}", hostd_api::error_chain(&e));
    }
}

async fn start_again<H: RestoreHost>(host: &H, services: &[String]) {
    for s in services {
        if let Err(e) = host.start(s).await {
            tracing::error!(
                service = s,
                "cannot start again after the failed restore: {e}"
            );
        }
    }
}

/// At start, what an interrupted restore left, with every kind on one
/// side: killed before or during the swap, whatever was swapped is swapped
/// back and the staged copies (never live) removed; killed after it, the
/// restored data stays and the previous copies are kept for the operator.
/// The services it stopped are started again. Each step is logged and a
/// failing one does not stop the next.
pub async fn recover<H: RestoreHost>(host: &H, marker: &JsonFile<Marker>, m: &Marker) {
    tracing::warn!(
        started = m.started,
        phase = ?m.phase,
        "a restore was interrupted (hostd stopped mid-restore); putting the host back"
    );
    let stuck = match m.phase {
        Phase::Staging => Vec::new(),
        Phase::Swapping => {
            let begun = m.pieces().into_iter().take(m.swapped).collect::<Vec<_>>();
            swap::unswap_all(host, &begun).await
        }
        Phase::Starting => {
            tracing::warn!(
                "the restore had swapped everything in: previous copies (hostd_pre_restore_*, *.hostd-pre-restore) are kept for the operator"
            );
            Vec::new()
        }
    };
    if m.phase != Phase::Starting && stuck.is_empty() {
        host.drop_copies(Copies::Staged, &m.databases, &m.paths)
            .await;
    }
    for service in &m.stopped {
        match host.start(service).await {
            Ok(()) => tracing::info!(service, "started again after the interrupted restore"),
            Err(e) => tracing::error!(service, "cannot start after the interrupted restore: {e}"),
        }
    }
    marker.clear();
}
