//! The event stream of one restore, also written to the journal.

use std::time::Instant;

use hostd_api::{RestoreEvent, RestorePlan};
use tokio::sync::mpsc;

/// The stream of one restore. Sending never blocks and never fails the
/// restore: a client that went away just stops hearing about it.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::UnboundedSender<RestoreEvent>,
    started: Instant,
}

impl Events {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<RestoreEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let started = Instant::now();
        (Self { tx, started }, rx)
    }

    fn send(&self, e: RestoreEvent) {
        let _ = self.tx.send(e);
    }

    pub fn plan(&self, plan: &RestorePlan, dry_run: bool) {
        self.send(RestoreEvent::Plan {
            plan: plan.clone(),
            dry_run,
        });
    }

    pub fn waiting(&self, holder: String) {
        tracing::info!("restore waiting for {holder}");
        self.send(RestoreEvent::Waiting { holder });
    }

    pub fn step(&self, step: &str) -> Instant {
        tracing::info!("restore: {step}");
        self.send(RestoreEvent::Step { step: step.into() });
        Instant::now()
    }

    pub fn done(&self, step: &str, since: Instant) {
        self.send(RestoreEvent::StepDone {
            step: step.into(),
            seconds: since.elapsed().as_secs_f64(),
        });
    }

    pub fn progress(&self, step: &str, total: Option<u64>) -> impl FnMut(u64) + Send + 'static {
        let (tx, step) = (self.tx.clone(), step.to_owned());
        move |bytes| {
            let _ = tx.send(RestoreEvent::Progress {
                step: step.clone(),
                bytes,
                total,
            });
        }
    }

    pub fn finished(&self, result: Result<(), String>) {
        let seconds = self.started.elapsed().as_secs_f64();
        match &result {
            Ok(()) => tracing::info!(seconds, "restore finished"),
            Err(e) => tracing::error!(seconds, "restore failed: {e}"),
        }
        self.send(RestoreEvent::Finished {
            ok: result.is_ok(),
            seconds,
            error: result.err(),
        });
    }
}
