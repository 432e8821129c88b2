//! Changes: batch by batch, stopping after the first batch in which a
//! host failed, and how each host's part is reported.

use std::future::Future;

use serde::Serialize;

use crate::config::HostTarget;

/// One host's part in a change made host by host, as the service
/// commands, `secrets sync` and `backup now` report it: `--json` puts the
/// fields of `T` (hostd's answers under their own names) beside the host,
/// its address and the outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Changed<T> {
    pub host: String,
    pub address: String,
    pub outcome: Outcome,
    #[serde(flatten)]
    pub answer: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<T> Changed<T> {
    pub fn new(target: &HostTarget, outcome: Outcome, answer: T, error: Option<String>) -> Self {
        Self {
            host: target.name.clone(),
            address: target.destination.clone(),
            outcome,
            answer,
            error,
        }
    }

    /// A host not reached because an earlier one failed.
    pub fn not_touched(target: &HostTarget) -> Self
    where
        T: Default,
    {
        Self::new(target, Outcome::NotTouched, T::default(), None)
    }

    /// The hosts of `changes` that ended so.
    pub fn hosts(changes: &[Self], outcome: Outcome) -> Vec<String> {
        changes
            .iter()
            .filter(|c| c.outcome == outcome)
            .map(|c| c.host.clone())
            .collect()
    }

    /// `Err` with the hosts that failed, if any (a change still running
    /// is not done either).
    pub fn all_done(changes: &[Self]) -> Result<(), Vec<String>> {
        let mut failed = Self::hosts(changes, Outcome::Failed);
        failed.extend(Self::hosts(changes, Outcome::Unfollowed));
        match failed {
            failed if failed.is_empty() => Ok(()),
            failed => Err(failed),
        }
    }
}

/// How one host took part in a change made batch by batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Part<T> {
    /// The change ran there; `T` says how it went.
    Ran(T),
    /// Not tried: a host of an earlier batch failed.
    Skipped,
}

impl<T> Part<T> {
    /// What the change gave, or what stands for a skipped host.
    pub fn or_skipped(self, skipped: impl FnOnce() -> T) -> T {
        match self {
            Self::Ran(t) => t,
            Self::Skipped => skipped(),
        }
    }
}

/// What the watcher of [`in_batches_watched`] is told, host by host in
/// `hosts` order.
#[derive(Debug)]
pub enum Turn<'a, T> {
    /// The change is about to run on this host.
    Begins(&'a HostTarget),
    /// The host's part is over (at once for a skipped host).
    Ends(&'a HostTarget, &'a Part<T>),
}

/// How a change went on one host, as the service commands, `secrets sync`
/// and `backup now` report it (`--json` shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Failed,
    /// Asked of the host, which had not answered when hostctl stopped
    /// waiting: it may still be going.
    Unfollowed,
    /// Not reached because an earlier host failed.
    NotTouched,
}

/// A change, `size` hosts at a time (at least one); the hosts of a batch
/// change at once, and after a batch in which `failed` holds for a host
/// the remaining hosts are skipped. The parts in `hosts` order.
pub async fn in_batches<'h, T, F>(
    hosts: &'h [HostTarget],
    size: usize,
    change: impl FnMut(&'h HostTarget) -> F,
    failed: impl Fn(&T) -> bool,
) -> Vec<Part<T>>
where
    F: Future<Output = T>,
{
    let unwatched = |_: Turn<'_, T>| Ok::<(), std::convert::Infallible>(());
    let Ok(parts) = in_batches_watched(hosts, size, change, failed, unwatched).await;
    parts
}

/// [`in_batches`], telling `watch` when each host begins and ends, so
/// that what is done so far can be shown while the rest goes on. An error
/// of `watch` (output that cannot be written) stops the change there.
pub async fn in_batches_watched<'h, T, E, F>(
    hosts: &'h [HostTarget],
    size: usize,
    mut change: impl FnMut(&'h HostTarget) -> F,
    failed: impl Fn(&T) -> bool,
    mut watch: impl FnMut(Turn<'_, T>) -> Result<(), E>,
) -> Result<Vec<Part<T>>, E>
where
    F: Future<Output = T>,
{
    let mut parts = Vec::with_capacity(hosts.len());
    let mut stopped = false;
    for batch in hosts.chunks(size.max(1)) {
        if stopped {
            for target in batch {
                let part = Part::Skipped;
                watch(Turn::Ends(target, &part))?;
                parts.push(part);
            }
            continue;
        }
        // Made before `Begins` is told: what a change says as it is made
        // (its log line) comes before what the watcher shows for it.
        let changes: Vec<F> = batch.iter().map(&mut change).collect();
        for target in batch {
            watch(Turn::Begins(target))?;
        }
        let done = futures_util::future::join_all(changes).await;
        for (target, result) in batch.iter().zip(done) {
            stopped |= failed(&result);
            let part = Part::Ran(result);
            watch(Turn::Ends(target, &part))?;
            parts.push(part);
        }
    }
    Ok(parts)
}
