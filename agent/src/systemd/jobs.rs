//! Changing unit state: start/stop/restart as systemd jobs, each waited for
//! through its JobRemoved signal with a deadline. A failed job is an error
//! naming the unit and carrying its last journal lines.

use std::time::Duration;

use futures_util::StreamExt;
use zbus::proxy::CacheProperties;
use zbus_systemd::systemd1::ServiceProxy;

use super::{Systemd, SystemdError};
use crate::config::UnitName;

/// Journal lines attached to a failed job: enough to see the cause.
const JOURNAL_LINES: u32 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Start,
    Stop,
    Restart,
}

impl JobKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("systemd refused to {kind} {unit}")]
    Refused {
        kind: &'static str,
        unit: String,
        #[source]
        source: zbus::Error,
    },
    #[error("{kind} {unit} failed (job result: {result}); last journal lines:\n{journal}")]
    Failed {
        kind: &'static str,
        unit: String,
        result: String,
        journal: String,
    },
    #[error("{kind} {unit} did not finish within {}s", .after.as_secs())]
    Timeout {
        kind: &'static str,
        unit: String,
        after: Duration,
    },
    #[error(transparent)]
    Systemd(#[from] SystemdError),
}

/// How a service's main process last ended, for failure events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceOutcome {
    /// systemd's Result (`success`, `signal`, `exit-code`, `timeout`...).
    pub result: String,
    /// Exit status, or the signal number when the process was killed.
    pub exit_status: Option<i32>,
}

impl ServiceOutcome {
    /// How the main process ended, for an operator; a kill by the system
    /// call filter says which setting to change, since systemd itself only
    /// says `status=31/SYS`.
    pub fn explain(&self) -> String {
        match (self.result.as_str(), self.exit_status) {
            ("signal" | "core-dump", Some(31)) => "killed by SIGSYS: it made a system call the unit's \
                SystemCallFilter= denies. A JIT runtime (Node.js, the JVM, .NET) needs `jit = true` \
                in its [services.NAME]; anything else, a drop-in that widens SystemCallFilter="
                .to_owned(),
            ("signal" | "core-dump", Some(n)) => format!("killed by signal {n}"),
            ("exit-code", Some(n)) => format!("exited with status {n}"),
            (result, _) => format!("ended ({result})"),
        }
    }
}

impl Systemd {
    /// Runs one job and waits for its end. The JobRemoved stream is opened
    /// before the call: opened after, a fast job could end unseen.
    pub async fn job(
        &self,
        kind: JobKind,
        unit: &UnitName,
        timeout: Duration,
    ) -> Result<(), JobError> {
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(SystemdError::Subscribe)?;
        let refused = |source| JobError::Refused {
            kind: kind.as_str(),
            unit: unit.to_string(),
            source,
        };
        let name = unit.to_string();
        let mode = "replace".to_owned();
        let job = match kind {
            JobKind::Start => self.manager.start_unit(name, mode).await,
            JobKind::Stop => self.manager.stop_unit(name, mode).await,
            JobKind::Restart => self.manager.restart_unit(name, mode).await,
        }
        .map_err(refused)?;
        let result = tokio::time::timeout(timeout, async {
            while let Some(signal) = removed.next().await {
                if let Ok(args) = signal.args()
                    && args.job() == &job
                {
                    return Some(args.result().clone());
                }
            }
            None
        })
        .await
        .map_err(|_| JobError::Timeout {
            kind: kind.as_str(),
            unit: unit.to_string(),
            after: timeout,
        })?;
        match result.as_deref() {
            Some("done") => Ok(()),
            other => Err(JobError::Failed {
                kind: kind.as_str(),
                unit: unit.to_string(),
                result: other.unwrap_or("signal stream ended").to_owned(),
                journal: journal_tail(unit).await,
            }),
        }
    }

    /// Queues a restart and returns at once: for hostd's own unit, whose
    /// job ends with this process.
    pub async fn restart_unit_nowait(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .restart_unit(unit.to_owned(), "replace".to_owned())
            .await
            .map(drop)
            .map_err(SystemdError::Subscribe)
    }

    /// Queues a restart of `unit` if it is running, and returns at once.
    pub async fn try_restart_unit_nowait(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .try_restart_unit(unit.to_owned(), "replace".to_owned())
            .await
            .map(drop)
            .map_err(SystemdError::Subscribe)
    }

    /// Queues a start and returns at once: for a oneshot whose start job
    /// lasts as long as its run.
    pub async fn start_unit_nowait(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .start_unit(unit.to_owned(), "replace".to_owned())
            .await
            .map(drop)
            .map_err(|source| SystemdError::LoadUnit {
                unit: unit.to_owned(),
                source,
            })
    }

    /// daemon-reload: systemd rereads unit files after hostd installed some.
    pub async fn reload(&self) -> Result<(), SystemdError> {
        self.manager.reload().await.map_err(SystemdError::Subscribe)
    }

    /// Enables unit files (their [Install] links). Idempotent.
    pub async fn enable(&self, units: &[String]) -> Result<(), SystemdError> {
        if units.is_empty() {
            return Ok(());
        }
        self.manager
            .enable_unit_files(units.to_vec(), false, false)
            .await
            .map(|_| ())
            .map_err(|source| SystemdError::LoadUnit {
                unit: units.join(" "),
                source,
            })
    }

    /// Clears a failed unit so it can be started again.
    pub async fn reset_failed(&self, unit: &UnitName) -> Result<(), SystemdError> {
        match self.manager.reset_failed_unit(unit.to_string()).await {
            Ok(()) => Ok(()),
            // Not loaded means nothing to reset.
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
            {
                Ok(())
            }
            Err(source) => Err(SystemdError::LoadUnit {
                unit: unit.to_string(),
                source,
            }),
        }
    }

    /// Loaded units matching a glob (`api@*.service`), whatever their state:
    /// finds instances hostd no longer wants (after a scale down or a
    /// restart of hostd with a smaller desired count).
    pub async fn units_matching(&self, pattern: &str) -> Result<Vec<String>, SystemdError> {
        let units = self
            .manager
            .list_units_by_patterns(vec![], vec![pattern.to_owned()])
            .await
            .map_err(SystemdError::Subscribe)?;
        Ok(units
            .into_iter()
            .filter(|u| u.2 != "not-found")
            .map(|u| u.0)
            .collect())
    }

    /// Result and exit status of a service's last run.
    pub async fn service_outcome(&self, unit: &UnitName) -> Result<ServiceOutcome, SystemdError> {
        let prop = |source| SystemdError::Property {
            unit: unit.to_string(),
            source,
        };
        let service = self.service_proxy(unit).await?;
        let (result, code, status) = tokio::try_join!(
            service.result(),
            service.exec_main_code(),
            service.exec_main_status()
        )
        .map_err(prop)?;
        // ExecMainCode is a CLD_* code: 0 means the process never ran.
        Ok(ServiceOutcome {
            result,
            exit_status: (code != 0).then_some(status),
        })
    }
}

impl Systemd {
    /// The `Service` interface of `unit`, read fresh (no cache): right
    /// after a job its cached properties can be stale.
    pub(super) async fn service_proxy(
        &self,
        unit: &UnitName,
    ) -> Result<ServiceProxy<'static>, SystemdError> {
        ServiceProxy::builder(&self.conn)
            .path(self.object_path(unit).await?)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|source| SystemdError::Property {
                unit: unit.to_string(),
                source,
            })
    }
}

/// The unit's last journal lines. journalctl, because the journal has no
/// D-Bus API; a failure to read it must not hide the job's failure.
pub async fn journal_tail(unit: &UnitName) -> String {
    let out = tokio::process::Command::new("journalctl")
        .args(["--no-pager", "-o", "short-iso", "-n"])
        .arg(JOURNAL_LINES.to_string())
        .arg("-u")
        .arg(unit.as_str())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim_end().to_owned(),
        Ok(o) => format!(
            "(journalctl failed: {})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("(cannot run journalctl: {e})"),
    }
}
