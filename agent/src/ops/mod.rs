//! The operations task: deploys, rollbacks, restores, task runs, hostd
//! upgrades and the recovery of interrupted ones run here one at a time,
//! in the order they came. What runs is published as the [`Holder`]
//! (`hostctl lock status`, and the backup task, which does not start a
//! scheduled run under one). An operation that arrives while another runs
//! waits up to its own bound (`--lock-wait`), or is refused at once naming
//! the holder.
//!
//! It lives in hostd's memory and hostd runs the operation itself, so a
//! holder that dies (hostd killed) cannot leave it taken: a restarted hostd
//! starts free and first recovers what the interrupted operation left
//! (the deploy and restore markers). hostctl going away mid-operation does
//! not matter: the operation is hostd's, not hostctl's.

pub mod http;
mod queue;
#[cfg(test)]
mod tests;

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::lifetime::Lifetime;

/// How long a running operation may go on once hostd is asked to stop
/// (systemd allows hostd 20 s): a deploy or restore cut short after it
/// leaves its marker, which the next hostd acts on.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Who holds the host, shown to whoever waits for it.
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

#[derive(Debug, Clone, thiserror::Error)]
pub enum OpsError {
    #[error("the host's operations lock is held: {0}")]
    Held(Holder),
    #[error("the host's operations lock is still held after waiting {}s: {holder}", .waited.as_secs())]
    StillHeld { holder: Holder, waited: Duration },
    #[error("hostd is shutting down; the operation did not run")]
    Gone,
}

impl crate::http::Refusal for OpsError {
    fn http_status(&self) -> u16 {
        match self {
            Self::Held(_) | Self::StillHeld { .. } => 409,
            Self::Gone => 503,
        }
    }
}

/// What the task publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpsView {
    pub holder: Option<Holder>,
    /// What recovery at start found and did, until an operator
    /// acknowledges it (`hostctl lock release`).
    pub recovered: Vec<String>,
}

type Callback<T> = Box<dyn FnOnce(T) + Send>;

/// One operation, ready to run.
pub struct Operation {
    holder: Holder,
    wait: Duration,
    run: BoxFuture<'static, ()>,
    on_waiting: Option<Callback<Holder>>,
    on_never_run: Option<Callback<OpsError>>,
}

impl Operation {
    /// `run` does the whole operation and tells its requester how it went
    /// (its event stream). It may wait `wait` for the one running.
    pub fn new(
        holder: Holder,
        wait: Duration,
        run: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        Self {
            holder,
            wait,
            run: Box::pin(run),
            on_waiting: None,
            on_never_run: None,
        }
    }

    /// Told the holder when the operation has to wait for it.
    pub fn on_waiting(mut self, f: impl FnOnce(Holder) + Send + 'static) -> Self {
        self.on_waiting = Some(Box::new(f));
        self
    }

    /// Told why when a queued operation will never run (its wait ran out,
    /// or hostd is stopping). Not called when `submit` refuses it: the
    /// caller has the error then.
    pub fn on_never_run(mut self, f: impl FnOnce(OpsError) + Send + 'static) -> Self {
        self.on_never_run = Some(Box::new(f));
        self
    }

    fn never_run(self, why: OpsError) {
        if let Some(f) = self.on_never_run {
            f(why);
        }
    }
}

enum Request {
    Submit {
        op: Operation,
        reply: oneshot::Sender<Result<(), OpsError>>,
    },
    Recovered(String),
    Acknowledge {
        reply: oneshot::Sender<Result<OpsView, Holder>>,
    },
}

#[derive(Clone)]
pub struct OpsHandle {
    tx: mpsc::Sender<Request>,
    view: watch::Receiver<OpsView>,
}

impl OpsHandle {
    /// Runs `op` now, or queues it when another runs and it may wait.
    /// Refused (and dropped, never run) when another runs and it may not
    /// wait, or when hostd is stopping.
    pub async fn submit(&self, op: Operation) -> Result<(), OpsError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Submit { op, reply })
            .await
            .map_err(|_| OpsError::Gone)?;
        rx.await.unwrap_or(Err(OpsError::Gone))
    }

    pub fn holder(&self) -> Option<Holder> {
        self.view.borrow().holder.clone()
    }

    pub fn view(&self) -> watch::Receiver<OpsView> {
        self.view.clone()
    }

    /// Adds a line to what `hostctl lock status` reports as recovered.
    pub async fn recovered(&self, note: String) {
        let _ = self.tx.send(Request::Recovered(note)).await;
    }

    /// Clears what recovery reported, unless an operation runs now (its
    /// holder is the error). Answers the view as it was.
    pub async fn acknowledge(&self) -> Result<OpsView, Holder> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::Acknowledge { reply }).await.is_err() {
            return Ok(self.view.borrow().clone());
        }
        rx.await.unwrap_or_else(|_| Ok(self.view.borrow().clone()))
    }
}

/// Starts the task; it ends when `lifetime` does, after giving the
/// running operation [`SHUTDOWN_GRACE`] to finish.
pub fn spawn(lifetime: &Lifetime) -> OpsHandle {
    let (tx, rx) = mpsc::channel(16);
    let (view_tx, view) = watch::channel(OpsView::default());
    lifetime.spawn(
        "operations",
        queue::Queue::run(view_tx, lifetime.clone(), rx),
    );
    OpsHandle { tx, view }
}
