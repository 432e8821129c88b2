//! One-shot tasks and scheduled jobs on the wire.
//!
//! A task is a command of a release run by hand (`hostctl run SERVICE
//! TASK`): `POST /v1/tasks/run` with a [`TaskRequest`]. A job is a command
//! hostd runs on a schedule as a systemd timer: `GET /v1/jobs` lists them
//! ([`JobsList`]), `POST /v1/jobs/{name}/run` starts one now. Both runs
//! answer with a stream of [`RunEvent`]s, one JSON document per line,
//! ending with `finished`.

use serde::{Deserialize, Serialize};

use crate::HealthStatus;

/// `POST /v1/tasks/run`: a command run once in the service's current
/// release, with its user, environment and secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRequest {
    /// The systemd unit the service runs as (`api@.service`), as in a deploy.
    pub unit: String,
    /// The task's name in hostctl.toml (`migrate`), for logs and the unit name.
    pub task: String,
    /// Run with `/bin/sh -c` in the release directory.
    pub command: String,
    pub timeout_seconds: u64,
    /// `user@machine` of the operator.
    #[serde(default)]
    pub requested_by: String,
}

/// A release's named command, sent with a deploy: `pre_switch` tasks run
/// before the switch, in order, and the first failure aborts the deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub command: String,
    pub timeout_seconds: u64,
}

/// One line of a task or job run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The transient unit the run is (`hostd-task-api-migrate-...`).
    Started { unit: String },
    /// A line the command printed (stdout and stderr, as they come).
    Output { line: String },
    /// The last line.
    Finished {
        /// `success`, `exit-code`, `timeout`, `signal`... (systemd's words).
        result: String,
        /// The command's exit status, when it exited by itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        seconds: f64,
        /// Why the run could not start or end normally.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsList {
    pub jobs: Vec<JobStatus>,
}

/// One `[jobs.NAME]` of hostd.toml and how it has been doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    /// systemd calendar syntax, as configured (`*-*-* 03:00:00`).
    pub schedule: String,
    pub command: String,
    /// The app service whose current release the command runs from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The generated service unit (`hostd-job-NAME.service`); its timer
    /// has the same name with `.timer`.
    pub unit: String,
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<JobRun>,
    /// RFC 3339, from the timer; absent when the timer is not waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// `degraded` when the last run failed or a run is overdue.
    pub health: HealthStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One recorded run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    /// RFC 3339.
    pub started: String,
    /// RFC 3339; absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// systemd's result word: `success`, `exit-code`, `timeout`, `signal`...
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// `timer` or `manual` (`hostctl jobs run`).
    pub trigger: String,
}

impl JobRun {
    pub fn succeeded(&self) -> bool {
        self.result == "success"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_streams_end_with_a_tagged_finished_line() -> Result<(), serde_json::Error> {
        let e = RunEvent::Finished {
            result: "exit-code".into(),
            exit_code: Some(3),
            seconds: 0.5,
            error: None,
        };
        let line = serde_json::to_string(&e)?;
        assert!(
            line.starts_with(r#"{"event":"finished","result":"exit-code","exit_code":3"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<RunEvent>(&line)?, e);
        Ok(())
    }
}
