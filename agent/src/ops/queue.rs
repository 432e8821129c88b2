//! The task behind [`super::OpsHandle`]: one operation running, the rest
//! waiting in order until their bound.

use std::collections::VecDeque;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Holder, Operation, OpsError, OpsView, Request, SHUTDOWN_GRACE};
use crate::lifetime::Lifetime;

/// Sent by an operation's task when it ends.
type Done = mpsc::UnboundedSender<()>;

struct Waiting {
    op: Operation,
    deadline: Instant,
}

pub(super) struct Queue {
    view: watch::Sender<OpsView>,
    lifetime: Lifetime,
    running: Option<(Holder, JoinHandle<()>)>,
    waiting: VecDeque<Waiting>,
    done: Done,
}

impl Queue {
    pub(super) async fn run(
        view: watch::Sender<OpsView>,
        lifetime: Lifetime,
        mut rx: mpsc::Receiver<Request>,
    ) {
        let (done, mut ended) = mpsc::unbounded_channel();
        let mut queue = Self {
            view,
            lifetime: lifetime.clone(),
            running: None,
            waiting: VecDeque::new(),
            done,
        };
        loop {
            let next_deadline = queue.waiting.iter().map(|w| w.deadline).min();
            tokio::select! {
                biased;
                () = lifetime.ending() => break,
                req = rx.recv() => match req {
                    Some(req) => queue.handle(req),
                    None => break,
                },
                Some(()) = ended.recv() => queue.finished(),
                () = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)),
                    if next_deadline.is_some() => queue.expire(),
            }
        }
        queue.stop().await;
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Submit { op, reply } => {
                let _ = reply.send(self.submit(op));
            }
            Request::Recovered(note) => self.view.send_modify(|v| v.recovered.push(note)),
            Request::Acknowledge { reply } => {
                let before = self.view.borrow().clone();
                let answer = match before.holder.clone() {
                    Some(h) => Err(h),
                    None => {
                        self.view.send_modify(|v| v.recovered.clear());
                        Ok(before)
                    }
                };
                let _ = reply.send(answer);
            }
        }
    }

    fn submit(&mut self, op: Operation) -> Result<(), OpsError> {
        if self.lifetime.is_ending() {
            return Err(OpsError::Gone);
        }
        let Some((holder, _)) = &self.running else {
            self.start(op);
            return Ok(());
        };
        if op.wait.is_zero() {
            return Err(OpsError::Held(holder.clone()));
        }
        let holder = holder.clone();
        // Waits are bounded where requests are checked; a wait that still
        // overflows the clock waits as long as the clock can count.
        let deadline = Instant::now()
            .checked_add(op.wait)
            .unwrap_or_else(far_future);
        tracing::info!(
            operation = op.holder.operation,
            "waiting for the operations lock: {holder}"
        );
        let mut op = op;
        if let Some(f) = op.on_waiting.take() {
            f(holder);
        }
        self.waiting.push_back(Waiting { op, deadline });
        Ok(())
    }

    fn start(&mut self, op: Operation) {
        tracing::info!(
            operation = op.holder.operation,
            by = op.holder.requested_by,
            "operations lock taken"
        );
        let holder = op.holder.clone();
        let (run, done) = (op.run, self.done.clone());
        let task = self.lifetime.spawn("operation", async move {
            run.await;
            let _ = done.send(());
        });
        self.view.send_modify(|v| v.holder = Some(holder.clone()));
        self.running = Some((holder, task));
    }

    fn finished(&mut self) {
        if let Some((holder, _)) = self.running.take() {
            tracing::info!(operation = holder.operation, "operations lock released");
        }
        self.view.send_modify(|v| v.holder = None);
        // Once hostd is stopping, what waits is refused, not started.
        if self.lifetime.is_ending() {
            return;
        }
        if let Some(next) = self.waiting.pop_front() {
            self.start(next.op);
        }
    }

    /// Waiting operations whose bound passed are told so, naming the
    /// holder they waited for.
    fn expire(&mut self) {
        let now = Instant::now();
        let holder = self.running.as_ref().map(|(h, _)| h.clone());
        let (late, kept): (Vec<Waiting>, Vec<Waiting>) =
            self.waiting.drain(..).partition(|w| w.deadline <= now);
        self.waiting = kept.into();
        for w in late {
            let waited = w.op.wait;
            let why = match &holder {
                Some(holder) => OpsError::StillHeld {
                    holder: holder.clone(),
                    waited,
                },
                None => OpsError::Gone,
            };
            w.op.never_run(why);
        }
    }

    /// hostd is stopping: nothing waiting will run; what runs gets a grace.
    async fn stop(&mut self) {
        for w in self.waiting.drain(..) {
            w.op.never_run(OpsError::Gone);
        }
        let Some((holder, mut task)) = self.running.take() else {
            return;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            tracing::warn!(
                operation = holder.operation,
                "still running {}s after hostd was asked to stop; cut short (its marker lets the next hostd put the host right)",
                SHUTDOWN_GRACE.as_secs()
            );
            task.abort();
        }
    }
}

/// A year from now: later than any bounded wait.
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(366 * 24 * 60 * 60)
}
