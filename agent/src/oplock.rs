//! The host's operations lock: one restore (and, later, one deploy) at a
//! time. It lives in hostd's memory, and hostd runs the operation itself,
//! so a holder that dies (hostd killed) cannot leave it taken: a restarted
//! hostd starts unlocked and cleans up what the operation left (see
//! `restore::recover`). hostctl going away mid-operation does not matter:
//! hostd holds the lock, not hostctl.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

/// Who holds the lock, shown to whoever waits for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// What runs (`restore latest`).
    pub operation: String,
    /// `user@machine` of the operator who asked.
    pub requested_by: String,
    /// RFC 3339.
    pub since: String,
}

impl Holder {
    pub fn new(operation: impl Into<String>, requested_by: impl Into<String>) -> Self {
        Self {
            operation: operation.into(),
            requested_by: requested_by.into(),
            since: hostd_api::time::now_rfc3339(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by = if self.requested_by.is_empty() {
            "hostd"
        } else {
            &self.requested_by
        };
        write!(f, "`{}` by {by} since {}", self.operation, self.since)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the host's operations lock is held: {0}")]
    Held(Holder),
    #[error("the host's operations lock is still held after waiting {}s: {holder}", .waited.as_secs())]
    StillHeld { holder: Holder, waited: Duration },
}

#[derive(Clone, Default)]
pub struct OpsLock {
    holder: Arc<Mutex<Option<Holder>>>,
    freed: Arc<Notify>,
}

/// Releases the lock when dropped, however the operation ends.
pub struct OpsGuard {
    lock: OpsLock,
}

impl Drop for OpsGuard {
    fn drop(&mut self) {
        *self.lock.slot() = None;
        self.lock.freed.notify_waiters();
    }
}

impl OpsLock {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Holder>> {
        self.holder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn holder(&self) -> Option<Holder> {
        self.slot().clone()
    }

    pub fn try_take(&self, holder: Holder) -> Result<OpsGuard, LockError> {
        let mut slot = self.slot();
        if let Some(current) = slot.as_ref() {
            return Err(LockError::Held(current.clone()));
        }
        tracing::info!(
            operation = holder.operation,
            by = holder.requested_by,
            "operations lock taken"
        );
        *slot = Some(holder);
        Ok(OpsGuard { lock: self.clone() })
    }

    /// Takes the lock, waiting up to `wait` for the holder to finish.
    pub async fn take(&self, holder: Holder, wait: Duration) -> Result<OpsGuard, LockError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before trying, so a release in between still wakes us.
            let freed = self.freed.notified();
            match self.try_take(holder.clone()) {
                Ok(guard) => return Ok(guard),
                Err(LockError::Held(current)) => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(LockError::StillHeld {
                            holder: current,
                            waited: wait,
                        });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_waiters_get_it_on_release() {
        let lock = OpsLock::default();
        let first = lock.try_take(Holder::new("restore latest", "ann@laptop"));
        assert!(first.is_ok());
        let second = lock.try_take(Holder::new("restore latest", "bob@desk"));
        assert!(
            matches!(&second, Err(LockError::Held(h)) if h.requested_by == "ann@laptop"),
            "{:?}",
            second.map(|_| ())
        );
        let waiting = {
            let lock = lock.clone();
            tokio::spawn(async move {
                lock.take(
                    Holder::new("restore x", "bob@desk"),
                    Duration::from_secs(60),
                )
                .await
                .map(|_| ())
            })
        };
        drop(first);
        assert!(matches!(waiting.await, Ok(Ok(()))));
        assert_eq!(lock.holder(), None);
    }

    #[tokio::test]
    async fn waiting_is_bounded() {
        let lock = OpsLock::default();
        let _held = lock.try_take(Holder::new("restore latest", ""));
        let err = lock
            .take(Holder::new("restore x", "bob"), Duration::from_millis(50))
            .await
            .map(|_| ());
        let text = err.map_err(|e| e.to_string());
        assert!(
            matches!(&text, Err(t) if t.contains("after waiting 0s") && t.contains("by hostd")),
            "{text:?}"
        );
    }
}
