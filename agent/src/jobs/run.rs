//! `hostctl jobs run NAME`: the job's own unit started now, exactly as its
//! timer would, its journal lines streamed as they are written. The run is
//! recorded like a scheduled one, as `manual`.

use std::time::{Duration, Instant};

use hostd_api::{ActiveState, RunEvent};
use tokio::sync::mpsc;

use super::{Jobs, JobsError, UNIT_JOB_TIMEOUT, unit, units};
use crate::config::UnitName;
use crate::systemd::JobKind;
use crate::systemd::journal::{POLL, Run, RunOutput, current_cursor};

/// How long after the job's end to wait for D-Bus to say so.
const SETTLE: Duration = Duration::from_secs(3);

/// Marks the job as run by hand, refusing when it is already running.
pub(super) struct Claim {
    jobs: Jobs,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.jobs
            .manual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

impl Jobs {
    pub(super) async fn claim(&self, name: &str) -> Result<Claim, JobsError> {
        let config = self.config.get();
        let Some(job) = config.jobs.get(name) else {
            return Err(JobsError::Unknown {
                name: name.to_owned(),
                known: config.jobs.keys().cloned().collect(),
            });
        };
        if job.overlap {
            // Runs are instances of their own: nothing to refuse or mark.
            return Ok(Claim {
                jobs: self.clone(),
                name: String::new(),
            });
        }
        let state = self
            .systemd
            .run_state(&unit(&units::service_unit(name))?)
            .await?;
        let running = matches!(
            state.active_state,
            ActiveState::Active | ActiveState::Activating
        );
        let mut manual = self.manual.lock().unwrap_or_else(|p| p.into_inner());
        if running || manual.contains(name) {
            return Err(JobsError::Running {
                name: name.to_owned(),
                since: super::status::rfc3339_usec(state.start_usec),
            });
        }
        manual.insert(name.to_owned());
        Ok(Claim {
            jobs: self.clone(),
            name: name.to_owned(),
        })
    }

    pub(super) async fn run_now(
        &self,
        name: String,
        claim: Claim,
        tx: mpsc::UnboundedSender<RunEvent>,
    ) {
        let config = self.config.get();
        if config.jobs.get(&name).is_some_and(|j| j.overlap) {
            drop(claim);
            return self.run_instance_now(&name, tx).await;
        }
        let started = Instant::now();
        let finished =
            |result, exit_code, error| super::status::finished(started, result, exit_code, error);
        let error = match self.start_and_follow(&name, &tx).await {
            Ok(()) => None,
            Err(e) => Some(hostd_api::error_chain(&e)),
        };
        self.wait_stopped(&name).await;
        let recorded = self.record_finished(&name, "manual").await;
        drop(claim);
        self.observe().await;
        let event = match recorded {
            Ok(Some(run)) => finished(run.result, run.exit_code, error),
            Ok(None) => finished("unknown".into(), None, error),
            Err(e) => finished("unknown".into(), None, Some(hostd_api::error_chain(&e))),
        };
        let _ = tx.send(event);
    }

    /// The journal can show the end a moment before D-Bus does.
    async fn wait_stopped(&self, name: &str) {
        let Ok(service) = unit(&units::service_unit(name)) else {
            return;
        };
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            match self.systemd.run_state(&service).await {
                Ok(s)
                    if matches!(
                        s.active_state,
                        ActiveState::Active | ActiveState::Activating | ActiveState::Deactivating
                    ) =>
                {
                    tokio::time::sleep(POLL).await
                }
                _ => return,
            }
        }
    }

    async fn start_and_follow(
        &self,
        name: &str,
        tx: &mpsc::UnboundedSender<RunEvent>,
    ) -> Result<(), JobsError> {
        let service = unit(&units::service_unit(name))?;
        tracing::info!(job = name, "starting job by hand");
        let _ = tx.send(RunEvent::Started {
            unit: service.to_string(),
        });
        // The unit runs once at a time: what it logs after this is this run.
        let output = RunOutput::new(Run::Unit(service.as_str())).after(current_cursor().await?);
        // A command that cannot even start fails the start job: its state
        // still says how, for the record.
        self.systemd
            .job(JobKind::Start, &service, UNIT_JOB_TIMEOUT)
            .await?;
        let running = |s: ActiveState| {
            matches!(
                s,
                ActiveState::Active | ActiveState::Activating | ActiveState::Deactivating
            )
        };
        self.follow(name, &service, output, running, tx).await
    }

    /// Streams `output` of `service` until it is no longer `running` and
    /// its output is all in (bounded by the job's timeout).
    pub(super) async fn follow(
        &self,
        name: &str,
        service: &UnitName,
        mut output: RunOutput,
        running: impl Fn(ActiveState) -> bool,
        tx: &mpsc::UnboundedSender<RunEvent>,
    ) -> Result<(), JobsError> {
        let timeout = self
            .config
            .get()
            .jobs
            .get(name)
            .map_or(Duration::from_secs(3600), |j| j.timeout.0);
        let begun = Instant::now();
        let deadline = begun + timeout + UNIT_JOB_TIMEOUT;
        loop {
            for line in output.next_lines().await? {
                let _ = tx.send(RunEvent::Output { line });
            }
            if !running(self.systemd.run_state(service).await?.active_state) {
                output.stopped();
            }
            if output.complete() || Instant::now() > deadline {
                return Ok(());
            }
            // Quick at first (most jobs are short), then at an easy pace.
            let pause = if begun.elapsed() < Duration::from_secs(10) {
                POLL
            } else {
                POLL * 10
            };
            tokio::time::sleep(pause).await;
        }
    }
}
