//! The event stream of one deploy or rollback: what hostctl prints as it
//! goes, and what the journal keeps. Sending never blocks and never fails
//! the deploy: a client that went away just stops hearing about it.

use hostd_api::{DeployEvent, DeployOutcome};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Clone)]
pub struct Events {
    tx: mpsc::UnboundedSender<DeployEvent>,
    started: Instant,
}

impl Events {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<DeployEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                started: Instant::now(),
            },
            rx,
        )
    }

    pub fn send(&self, e: DeployEvent) {
        let _ = self.tx.send(e);
    }

    /// Where the manager reports each instance's restart.
    pub fn progress(&self) -> mpsc::UnboundedSender<DeployEvent> {
        self.tx.clone()
    }

    pub fn step(&self, step: &str) -> Instant {
        tracing::info!("deploy: {step}");
        self.send(DeployEvent::Step { step: step.into() });
        Instant::now()
    }

    pub fn done(&self, step: &str, since: Instant) {
        self.send(DeployEvent::StepDone {
            step: step.into(),
            seconds: since.elapsed().as_secs_f64(),
        });
    }

    pub fn waiting(&self, holder: String) {
        self.send(DeployEvent::Waiting { holder });
    }

    pub fn finished(
        &self,
        outcome: DeployOutcome,
        version: &str,
        serving: Option<String>,
        error: Option<String>,
    ) {
        match &error {
            Some(e) => tracing::warn!(outcome = outcome.as_str(), version, "deploy ended: {e}"),
            None => tracing::info!(outcome = outcome.as_str(), version, "deploy ended"),
        }
        self.send(DeployEvent::Finished {
            outcome,
            version: version.to_owned(),
            serving,
            seconds: self.started.elapsed().as_secs_f64(),
            error,
        });
    }
}
