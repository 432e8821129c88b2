//! The swap of a restore, all or nothing across kinds: each piece (a
//! database, Redis's RDB, a path) is swapped in atomically, and when one
//! fails the pieces already swapped are swapped back, newest first, so the
//! host never serves a restored database beside the old files. The
//! recovery of a hostd killed mid-swap swaps back the same way.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::seam::{RestoreHost, SwapError};
use crate::state_file::StateFileError;

/// Redis's live RDB and the service that loads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisRdb {
    pub rdb: PathBuf,
    pub service: String,
}

/// One thing a restore puts back, swapped as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Database(String),
    Redis(RedisRdb),
    Path(PathBuf),
}

impl fmt::Display for Piece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Database(db) => write!(f, "database {db}"),
            Self::Redis(r) => write!(f, "Redis's {}", r.rdb.display()),
            Self::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A swap that failed: the piece, why, and any piece that could not be
/// swapped back (each with its reason), which then holds restored data.
#[derive(Debug)]
pub struct SwapFailure {
    pub piece: String,
    pub error: SwapError,
    pub stuck: Vec<String>,
}

/// Every piece in order, each recorded by `begin(n)` (n pieces begun)
/// before its swap starts, so a recovery knows which to swap back. On a
/// failure every piece begun is swapped back, the failing one included (a
/// path may be moved aside without its restored copy in place).
pub async fn swap_all<H: RestoreHost>(
    host: &H,
    order: &[Piece],
    mut begin: impl FnMut(usize) -> Result<(), StateFileError>,
) -> Result<(), SwapFailure> {
    for (i, piece) in order.iter().enumerate() {
        let swapped = match begin(i + 1) {
            Ok(()) => match super::faults::at(&format!("swap {piece}")).await {
                Ok(()) => swap_one(host, piece).await,
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(SwapError::Record(e)),
        };
        if let Err(error) = swapped {
            tracing::error!(
                "swapping {piece} in failed: {}; swapping back what was swapped",
                hostd_api::error_chain(&error)
            );
            // A database swaps in one transaction: a failed one is not in.
            let begun = match (&error, piece) {
                (SwapError::Record(_), _) | (_, Piece::Database(_)) => &order[..i],
                _ => &order[..=i],
            };
            let stuck = unswap_all(host, begun).await;
            return Err(SwapFailure {
                piece: piece.to_string(),
                error,
                stuck,
            });
        }
    }
    Ok(())
}

/// Each piece back to its data from before the restore, newest first.
/// Only for pieces whose swap began (their staged copy existed then): an
/// unswap reads a missing staged copy as "swapped in". Returns what could
/// not be swapped back.
pub async fn unswap_all<H: RestoreHost>(host: &H, pieces: &[Piece]) -> Vec<String> {
    let mut stuck = Vec::new();
    for piece in pieces.iter().rev() {
        if let Err(e) = unswap_one(host, piece).await {
            let why = hostd_api::error_chain(&e);
            tracing::error!("cannot swap {piece} back: {why}");
            stuck.push(format!("{piece} ({why})"));
        }
    }
    stuck
}

async fn swap_one<H: RestoreHost>(host: &H, piece: &Piece) -> Result<(), SwapError> {
    match piece {
        Piece::Database(db) => host.swap_database(db).await,
        Piece::Path(p) => host.swap_path(p).await,
        // Stopped first: Redis saves on shutdown, over whatever is in place.
        Piece::Redis(r) => with_redis_stopped(host, r, host.swap_path(&r.rdb)).await,
    }
}

async fn unswap_one<H: RestoreHost>(host: &H, piece: &Piece) -> Result<(), SwapError> {
    match piece {
        Piece::Database(db) => host.unswap_database(db).await,
        Piece::Path(p) => host.unswap_path(p).await,
        Piece::Redis(r) => with_redis_stopped(host, r, host.unswap_path(&r.rdb)).await,
    }
}

/// Redis stopped, `change` made, Redis started again whatever the change
/// did: a Redis left stopped is an outage of its own.
async fn with_redis_stopped<H: RestoreHost>(
    host: &H,
    r: &RedisRdb,
    change: impl Future<Output = Result<(), SwapError>>,
) -> Result<(), SwapError> {
    host.stop(&r.service)
        .await
        .map_err(|source| SwapError::StopRedis {
            service: r.service.clone(),
            source: Box::new(source),
        })?;
    let changed = match super::faults::at("redis stopped").await {
        Ok(()) => change.await,
        Err(e) => Err(e.into()),
    };
    let started = host
        .start(&r.service)
        .await
        .map_err(|source| SwapError::StartRedis {
            service: r.service.clone(),
            source: Box::new(source),
        });
    changed?;
    started
}
