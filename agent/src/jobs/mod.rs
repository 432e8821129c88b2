//! Scheduled jobs (`[jobs.NAME]` in hostd.toml): hostd generates a systemd
//! timer and service for each ([`units`]), removes those of jobs no longer
//! configured, records every run ([`records`]), and judges each job's health
//! ([`status`]): a failed last run or a missed one makes /health degraded.
//! `hostctl jobs run NAME` starts the job's own unit now and streams its
//! journal ([`run`]).

pub mod http;
mod instances;
pub mod records;
mod run;
pub mod status;
pub mod units;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hostd_api::{ActiveState, JobRun, JobStatus};
use tokio::sync::watch;

use crate::config::{CurrentConfig, UnitName};
use crate::lifetime::Lifetime;
use crate::systemd::{JobKind, Systemd};
use records::{Record, Records};

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("no job `{name}` here; configured jobs: {}", if .known.is_empty() { "none".to_owned() } else { .known.join(", ") })]
    Unknown { name: String, known: Vec<String> },
    #[error("job {name} is running (since {since}); it does not overlap with itself")]
    Running { name: String, since: String },
    #[error("cannot install the units of job {name} in {path}")]
    Write {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Systemd(#[from] crate::systemd::SystemdError),
    #[error(transparent)]
    Job(#[from] crate::systemd::JobError),
    #[error(transparent)]
    Records(#[from] crate::state_file::StateFileError),
    #[error("{0} did not start")]
    NotStarted(String),
    #[error("cannot read the run's output from the journal")]
    Journal(#[from] crate::systemd::journal::JournalError),
}

impl crate::http::Refusal for JobsError {
    fn http_status(&self) -> u16 {
        match self {
            Self::Unknown { .. } => 404,
            Self::Running { .. } => 409,
            Self::Write { .. }
            | Self::Systemd(_)
            | Self::Job(_)
            | Self::Records(_)
            | Self::NotStarted(_)
            | Self::Journal(_) => 500,
        }
    }
}

/// Bound on starting or stopping a timer or a job's unit.
const UNIT_JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// The subsystem's shared state: the observer task and runs by hand both
/// act through it.
#[derive(Clone)]
struct Jobs {
    config: CurrentConfig,
    systemd: Systemd,
    records: Records,
    status: watch::Sender<Vec<JobStatus>>,
    /// Jobs a `hostctl jobs run` is running: recorded as `manual` by it.
    manual: Arc<Mutex<BTreeSet<String>>>,
    /// One writer of records at a time (the observer and manual runs).
    recording: Arc<tokio::sync::Mutex<()>>,
}

fn unit(name: &str) -> Result<UnitName, JobsError> {
    UnitName::try_from(name.to_owned()).map_err(|e| JobsError::Unknown {
        name: e,
        known: Vec::new(),
    })
}

impl Jobs {
    fn new(config: CurrentConfig, systemd: Systemd, status: watch::Sender<Vec<JobStatus>>) -> Self {
        let records = Records::new(&config.get().state_dir);
        Self {
            config,
            systemd,
            records,
            status,
            manual: Arc::default(),
            recording: Arc::default(),
        }
    }

    /// Writes the configured jobs' units, removes the others', and starts
    /// every timer. Run after hostd's own unit sync and secrets delivery:
    /// a job copies its service's environment and credentials.
    async fn install(&self) -> Result<(), JobsError> {
        let config = self.config.get();
        let target = &config.units.target_dir;
        let mut changed = false;
        let mut timers = Vec::new();
        for (name, job) in &config.jobs {
            let service = job
                .service
                .as_ref()
                .and_then(|s| Some((s, config.services.get(s)?)));
            let (release, context) = match service {
                Some((_, svc)) => {
                    let instance = svc.unit.instance(1).unwrap_or_else(|| svc.unit.clone());
                    let context = self.systemd.exec_context(&instance).await?;
                    let release = svc.release_dir.as_ref().map(|d| d.join("current"));
                    (release, Some(context))
                }
                None => (None, None),
            };
            let origin = units::Origin {
                release: release.as_deref(),
                context: context.as_ref(),
            };
            let run = units::render_service(name, job, &origin);
            let mut files = vec![(units::timer_unit(name), units::render_timer(name, job))];
            if job.overlap {
                files.push((units::service_unit(name), units::render_launcher(name)));
                files.push((units::run_template(name), run));
            } else {
                files.push((units::service_unit(name), run));
            }
            for (file, text) in files {
                let path = target.join(&file);
                if std::fs::read(&path).ok().as_deref() == Some(text.as_bytes()) {
                    continue;
                }
                crate::fsutil::write_atomically(&path, text.as_bytes(), 0o644).map_err(
                    |source| JobsError::Write {
                        name: name.clone(),
                        path: path.clone(),
                        source,
                    },
                )?;
                tracing::info!(job = name, unit = file, "installed job unit");
                changed = true;
            }
            timers.push(units::timer_unit(name));
        }
        changed |= self.remove_unconfigured().await;
        if changed {
            self.systemd.reload().await?;
        }
        self.systemd.enable(&timers).await?;
        for t in &timers {
            self.systemd
                .job(JobKind::Start, &unit(t)?, UNIT_JOB_TIMEOUT)
                .await?;
        }
        Ok(())
    }

    /// Stops, disables and deletes the units of jobs hostd.toml no longer
    /// has (and run templates of jobs without `overlap`), with their
    /// records. True when something was removed.
    /// Failures are logged: one unit that cannot go must not keep the
    /// others, nor the daemon-reload after them.
    async fn remove_unconfigured(&self) -> bool {
        let config = self.config.get();
        let target = &config.units.target_dir;
        let mut stale: Vec<(String, String)> = Vec::new();
        for entry in std::fs::read_dir(target).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(job) = units::job_of_file(&file) else {
                continue;
            };
            let wanted = config
                .jobs
                .get(job)
                .is_some_and(|j| units::files_of(job, j).contains(&file));
            if !wanted {
                stale.push((job.to_owned(), file));
            }
        }
        // Timers first, so nothing starts a service being removed.
        stale.sort_by_key(|(_, f)| !f.ends_with(".timer"));
        for (job, file) in &stale {
            tracing::info!(
                job,
                unit = file,
                "removing the unit of a job no longer configured"
            );
            if let Err(e) = self.remove_unit_file(job, file).await {
                tracing::error!(unit = file, "cannot remove: {}", hostd_api::error_chain(&e));
            }
        }
        !stale.is_empty()
    }

    async fn remove_unit_file(&self, job: &str, file: &str) -> Result<(), JobsError> {
        let config = self.config.get();
        // A run template stops through its instances.
        let running = if file.ends_with("@.service") {
            let pattern = file.replace("@.service", "@*.service");
            self.systemd.units_matching(&pattern).await?
        } else {
            vec![file.to_owned()]
        };
        for u in &running {
            if let Err(e) = self
                .systemd
                .job(JobKind::Stop, &unit(u)?, UNIT_JOB_TIMEOUT)
                .await
            {
                tracing::warn!(unit = u, "cannot stop: {}", hostd_api::error_chain(&e));
            }
        }
        if file.ends_with(".timer") {
            self.systemd.disable(&[file.to_owned()]).await?;
        }
        let path = config.units.target_dir.join(file);
        std::fs::remove_file(&path).map_err(|source| JobsError::Write {
            name: job.to_owned(),
            path,
            source,
        })?;
        if !config.jobs.contains_key(job) {
            self.records.remove(job);
        }
        Ok(())
    }

    /// Records a finished run of `name` not recorded yet. `trigger` is what
    /// started it, as far as the caller knows.
    async fn record_finished(
        &self,
        name: &str,
        trigger: &str,
    ) -> Result<Option<JobRun>, JobsError> {
        let state = self
            .systemd
            .run_state(&unit(&units::service_unit(name))?)
            .await?;
        self.record_ended(name, &state, trigger)
            .await
            .map_err(Into::into)
    }

    /// Records the run `state` describes if it ended and is not recorded
    /// yet; the check and the append under one lock, so two observers
    /// record it once.
    async fn record_ended(
        &self,
        name: &str,
        state: &crate::systemd::RunState,
        trigger: &str,
    ) -> Result<Option<JobRun>, crate::state_file::StateFileError> {
        let busy = matches!(
            state.active_state,
            ActiveState::Active
                | ActiveState::Activating
                | ActiveState::Deactivating
                | ActiveState::Reloading
        );
        if busy || state.start_usec == 0 {
            return Ok(None);
        }
        let _one = self.recording.lock().await;
        if self
            .records
            .last(name)
            .is_some_and(|r| r.start_usec == state.start_usec)
        {
            return Ok(None);
        }
        let run = status::run_of(state, trigger);
        tracing::info!(job = name, result = run.result, exit_code = ?run.exit_code, trigger, "job run ended");
        self.records.append(
            name,
            &Record {
                start_usec: state.start_usec,
                run: run.clone(),
            },
        )?;
        Ok(Some(run))
    }

    /// Looks at every job once: records runs that ended, publishes status.
    async fn observe(&self) {
        let config = self.config.get();
        let mut out = Vec::with_capacity(config.jobs.len());
        for (name, job) in &config.jobs {
            let running = if job.overlap {
                self.record_instances(name).await.unwrap_or_else(|e| {
                    tracing::warn!(
                        job = name,
                        "cannot record its runs: {}",
                        hostd_api::error_chain(&e)
                    );
                    false
                })
            } else {
                self.observe_service(name).await
            };
            let timer = match unit(&units::timer_unit(name)) {
                Ok(u) => self
                    .systemd
                    .timer_state(&u)
                    .await
                    .map_err(|e| hostd_api::error_chain(&e)),
                Err(e) => Err(e.to_string()),
            };
            out.push(status::evaluate(status::Seen {
                name,
                job,
                running,
                last_run: self.records.last(name).map(|r| r.run),
                timer,
                check_interval: config.health.check_interval.0,
                now: SystemTime::now(),
            }));
        }
        self.status.send_replace(out);
    }

    /// Records the last run of a job without overlap; whether it runs.
    async fn observe_service(&self, name: &str) -> bool {
        let manual = self.is_manual(name);
        let state = match unit(&units::service_unit(name)) {
            Ok(u) => self.systemd.run_state(&u).await.map_err(JobsError::from),
            Err(e) => Err(e),
        };
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    job = name,
                    "cannot read its state: {}",
                    hostd_api::error_chain(&e)
                );
                return manual;
            }
        };
        // A run by hand records itself, as `manual`.
        if !manual && let Err(e) = self.record_ended(name, &state, "timer").await {
            tracing::warn!(
                job = name,
                "cannot record its last run: {}",
                hostd_api::error_chain(&e)
            );
        }
        manual
            || matches!(
                state.active_state,
                ActiveState::Active | ActiveState::Activating
            )
    }

    fn is_manual(&self, name: &str) -> bool {
        self.manual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }
}

/// How the control API reaches the jobs, and what they publish.
#[derive(Clone)]
pub struct JobsHandle {
    jobs: Jobs,
    lifetime: Lifetime,
}

impl JobsHandle {
    /// One entry per `[jobs.NAME]`, as last observed.
    pub fn status(&self) -> watch::Receiver<Vec<JobStatus>> {
        self.jobs.status.subscribe()
    }

    /// Writes the units of the jobs the configuration in force declares,
    /// removes those of jobs it no longer declares, starts the timers.
    pub async fn install(&self) -> Result<(), JobsError> {
        self.jobs.install().await
    }

    /// Looks at every job now and answers what it saw.
    pub async fn observe_now(&self) -> Vec<JobStatus> {
        self.jobs.observe().await;
        self.jobs.status.borrow().clone()
    }

    /// Starts `name` now (refused when unknown, or running without
    /// `overlap`); its output and end come on the receiver. The run goes
    /// on to its end whether or not anyone listens.
    pub async fn run(
        &self,
        name: String,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<hostd_api::RunEvent>, JobsError> {
        let claim = self.jobs.claim(&name).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let jobs = self.jobs.clone();
        self.lifetime.spawn(
            "job run",
            async move { jobs.run_now(name, claim, tx).await },
        );
        Ok(rx)
    }
}

/// Installs the jobs' units (also without jobs: units of jobs removed from
/// hostd.toml go), then observes them every check interval until hostd
/// stops. A new configuration's jobs are installed by whoever switches to
/// it ([`JobsHandle::install`]); the observer follows the configuration
/// in force, and sleeps while there are no jobs.
pub fn spawn(
    config: CurrentConfig,
    systemd: Systemd,
    status: watch::Sender<Vec<JobStatus>>,
    lifetime: &Lifetime,
) -> JobsHandle {
    let mut changes = config.clone();
    let jobs = Jobs::new(config, systemd, status);
    let observer = jobs.clone();
    let ending = lifetime.clone();
    lifetime.spawn("jobs observer", async move {
        if let Err(e) = observer.install().await {
            tracing::error!(
                "cannot install the jobs' units: {}",
                hostd_api::error_chain(&e)
            );
        }
        loop {
            let config = observer.config.get();
            let every = config.health.check_interval.0;
            let none = config.jobs.is_empty();
            drop(config);
            tokio::select! {
                () = tokio::time::sleep(every), if !none => observer.observe().await,
                () = changes.changed() => observer.observe().await,
                () = ending.ending() => return,
            }
        }
    });
    JobsHandle {
        jobs,
        lifetime: lifetime.clone(),
    }
}
