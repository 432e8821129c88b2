//! What every task hostd starts is tied to. A subsystem spawns through
//! its [`Lifetime`], so the task is tracked under a name; it watches
//! [`Lifetime::ending`] to stop; and [`Lifetime::finish`] asks every task
//! to end and joins them within a bound, naming any that did not.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Lifetime {
    token: CancellationToken,
    tracker: TaskTracker,
    /// Tasks still running, by a number of their own: what `finish` names
    /// when the bound passes.
    running: Arc<Mutex<BTreeMap<u64, &'static str>>>,
    next: Arc<AtomicU64>,
}

/// Takes a task off the running list however it ends, aborted included.
struct Running {
    id: u64,
    running: Arc<Mutex<BTreeMap<u64, &'static str>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Lifetime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` on the runtime, tracked under `name`.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let guard = self.register(name);
        self.tracker.spawn(async move {
            let _running = guard;
            task.await
        })
    }

    /// Runs `work` on a blocking thread, tracked under `name`.
    pub fn spawn_blocking<F, T>(&self, name: &'static str, work: F) -> tokio::task::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let guard = self.register(name);
        self.tracker.spawn_blocking(move || {
            let _running = guard;
            work()
        })
    }

    fn register(&self, name: &'static str) -> Running {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.running).insert(id, name);
        Running {
            id,
            running: Arc::clone(&self.running),
        }
    }

    /// Resolves once hostd is shutting down.
    pub async fn ending(&self) {
        self.token.cancelled().await;
    }

    pub fn is_ending(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Names of the tasks running now (for tests and for `finish`).
    pub fn running(&self) -> Vec<&'static str> {
        lock(&self.running).values().copied().collect()
    }

    /// Tells every task to end and waits up to `bound` for all of them.
    /// Returns the names of those still running then (also logged): the
    /// runtime drops them when hostd exits.
    pub async fn finish(&self, bound: Duration) -> Vec<&'static str> {
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let left = self.running();
        tracing::warn!(
            tasks = ?left,
            "tasks still running {}s after shutdown began; leaving them",
            bound.as_secs()
        );
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finish_joins_what_ends_and_names_what_does_not() {
        let lifetime = Lifetime::new();
        let polite = lifetime.clone();
        lifetime.spawn("polite", async move { polite.ending().await });
        lifetime.spawn("stubborn", std::future::pending::<()>());
        lifetime.spawn_blocking("quick", || ());
        let left = lifetime.finish(Duration::from_millis(100)).await;
        assert_eq!(left, ["stubborn"]);
        assert!(lifetime.is_ending());
    }

    #[tokio::test]
    async fn an_aborted_task_leaves_the_running_list() {
        let lifetime = Lifetime::new();
        let handle = lifetime.spawn("aborted", std::future::pending::<()>());
        handle.abort();
        let _ = handle.await;
        assert!(lifetime.running().is_empty());
        assert!(lifetime.finish(Duration::from_millis(100)).await.is_empty());
    }
}
