//! Jobs with `overlap = true`: every run is an instance of the job's run
//! template (`hostd-job-NAME@ID.service`), started by the timer's launcher
//! or by `hostctl jobs run` (ID `manual-…`), so runs go side by side. An
//! instance stays loaded after its end (exited or failed) until hostd has
//! recorded it; then hostd stops or resets it and systemd forgets it.

use std::time::{Duration, Instant};

use hostd_api::{ActiveState, RunEvent};
use tokio::sync::mpsc;

use super::records::Record;
use super::{Jobs, JobsError, status, unit, units};
use crate::systemd::journal::{POLL, Run, RunOutput};

/// How long a started instance has to get its InvocationID.
const START: Duration = Duration::from_secs(30);

fn running(s: ActiveState) -> bool {
    matches!(s, ActiveState::Activating | ActiveState::Deactivating)
}

impl Jobs {
    /// Records every instance of `name` that ended and lets it go.
    /// Returns whether one still runs.
    pub(super) async fn record_instances(&self, name: &str) -> Result<bool, JobsError> {
        let _one = self.recording.lock().await;
        let pattern = format!("{}{name}@*.service", units::PREFIX);
        let mut any_running = false;
        for instance in self.systemd.units_matching(&pattern).await? {
            let u = unit(&instance)?;
            let state = self.systemd.run_state(&u).await?;
            if running(state.active_state) {
                any_running = true;
                continue;
            }
            if state.start_usec != 0 && !self.recorded(name, state.start_usec) {
                let trigger = if instance.contains("@manual-") {
                    "manual"
                } else {
                    "timer"
                };
                let run = status::run_of(&state, trigger);
                tracing::info!(job = name, unit = instance, result = run.result, exit_code = ?run.exit_code, trigger, "job run ended");
                self.records.append(
                    name,
                    &Record {
                        start_usec: state.start_usec,
                        run,
                    },
                )?;
            }
            // Recorded: systemd may unload it now.
            match state.active_state {
                ActiveState::Active => {
                    self.systemd
                        .job(crate::systemd::JobKind::Stop, &u, super::UNIT_JOB_TIMEOUT)
                        .await?;
                }
                _ => self.systemd.reset_failed(&u).await?,
            }
        }
        Ok(any_running)
    }

    fn recorded(&self, name: &str, start_usec: u64) -> bool {
        self.records
            .read(name)
            .iter()
            .rev()
            .take(64)
            .any(|r| r.start_usec == start_usec)
    }

    /// `hostctl jobs run` of an overlapping job: a new instance, followed
    /// like any run, reported from its own end state.
    pub(super) async fn run_instance_now(&self, name: &str, tx: mpsc::UnboundedSender<RunEvent>) {
        let started = Instant::now();
        let finished =
            |result, exit_code, error| status::finished(started, result, exit_code, error);
        let event = match self.start_instance_and_follow(name, &tx).await {
            Ok(state) => finished(state.result, state.exit_code, None),
            Err(e) => finished("unknown".into(), None, Some(hostd_api::error_chain(&e))),
        };
        if let Err(e) = self.record_instances(name).await {
            tracing::warn!(
                job = name,
                "cannot record its runs: {}",
                hostd_api::error_chain(&e)
            );
        }
        self.observe().await;
        let _ = tx.send(event);
    }

    async fn start_instance_and_follow(
        &self,
        name: &str,
        tx: &mpsc::UnboundedSender<RunEvent>,
    ) -> Result<crate::systemd::RunState, JobsError> {
        let id = format!("manual-{:016x}", crate::random_u64());
        let instance = unit(&units::run_instance(name, &id))?;
        tracing::info!(job = name, unit = %instance, "starting job by hand");
        let _ = tx.send(RunEvent::Started {
            unit: instance.to_string(),
        });
        // A oneshot's start job lasts the whole run: not waited for.
        self.systemd.start_unit_nowait(instance.as_str()).await?;
        // The instance's name is this run's alone.
        let output = RunOutput::new(Run::Unit(instance.as_str())).oneshot();
        let deadline = Instant::now() + START;
        while self.systemd.run_state(&instance).await?.start_usec == 0 {
            if Instant::now() > deadline {
                return Err(JobsError::NotStarted(instance.to_string()));
            }
            tokio::time::sleep(POLL).await;
        }
        self.follow(name, &instance, output, running, tx).await?;
        Ok(self.systemd.run_state(&instance).await?)
    }
}
