//! A job's health from its record and its timer: pure, so every case is
//! unit-tested without systemd.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostd_api::{ActiveState, HealthStatus, JobRun, JobStatus};

use crate::config::JobConfig;
use crate::systemd::TimerState;

/// How late past its time a run may start before it counts as missed: a
/// run due now starts within systemd's accuracy (1 s) plus the random
/// delay; hostd looks every check interval.
const LATE_GRACE: Duration = Duration::from_secs(60);

pub use hostd_api::time::rfc3339_usec;

/// The record of a run that ended, from its unit's state.
pub fn run_of(state: &crate::systemd::RunState, trigger: &str) -> hostd_api::JobRun {
    hostd_api::JobRun {
        started: rfc3339_usec(state.start_usec),
        finished: Some(rfc3339_usec(state.exit_usec.max(state.start_usec))),
        result: state.result.clone(),
        exit_code: state.exit_code,
        trigger: trigger.to_owned(),
    }
}

/// The last line of a run's stream.
pub fn finished(
    started: std::time::Instant,
    result: String,
    exit_code: Option<i32>,
    error: Option<String>,
) -> hostd_api::RunEvent {
    hostd_api::RunEvent::Finished {
        result,
        exit_code,
        seconds: started.elapsed().as_secs_f64(),
        error,
    }
}

pub struct Seen<'a> {
    pub name: &'a str,
    pub job: &'a JobConfig,
    pub running: bool,
    pub last_run: Option<JobRun>,
    /// None: the timer could not be read (the reason is the error).
    pub timer: Result<TimerState, String>,
    pub check_interval: Duration,
    pub now: SystemTime,
}

pub fn evaluate(s: Seen<'_>) -> JobStatus {
    let mut reason: Option<String> = None;
    let mut degrade = |why: String| {
        reason.get_or_insert_with(|| format!("job {}: {why}", s.name));
    };
    let mut next_run = None;
    match &s.timer {
        Err(e) => degrade(format!("cannot read its timer: {e}")),
        Ok(t) if t.active_state != ActiveState::Active => degrade(format!(
            "its timer is {}, so it does not run",
            t.active_state.as_str()
        )),
        // 0: not scheduled; u64::MAX: systemd's "infinity", never.
        Ok(t) if t.next_elapse_usec == 0 || t.next_elapse_usec == u64::MAX => {}
        Ok(t) => {
            next_run = Some(rfc3339_usec(t.next_elapse_usec));
            let due = UNIX_EPOCH + Duration::from_micros(t.next_elapse_usec);
            let grace = LATE_GRACE + s.job.randomized_delay.0 + 2 * s.check_interval;
            if !s.running && s.now > due + grace {
                degrade(format!(
                    "was due at {} and has not run",
                    rfc3339_usec(t.next_elapse_usec)
                ));
            }
        }
    }
    if let Some(run) = &s.last_run
        && run.finished.is_some()
        && !run.succeeded()
    {
        let how = match run.exit_code {
            Some(c) if run.result == "exit-code" => format!("exit status {c}"),
            _ => run.result.clone(),
        };
        degrade(format!(
            "the last run (started {}) failed: {how}",
            run.started
        ));
    }
    let health = if reason.is_some() {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    JobStatus {
        name: s.name.to_owned(),
        schedule: s.job.schedule.clone(),
        command: s.job.command.clone(),
        service: s.job.service.clone(),
        unit: super::units::service_unit(s.name),
        running: s.running,
        last_run: s.last_run,
        next_run,
        health,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    const MIN: u64 = 60_000_000;

    fn job() -> JobConfig {
        JobConfig {
            schedule: "minutely".into(),
            command: "/bin/true".into(),
            service: None,
            user: None,
            timeout: HumanDuration(Duration::from_secs(60)),
            randomized_delay: HumanDuration(Duration::ZERO),
            overlap: false,
        }
    }

    fn run(result: &str, code: Option<i32>) -> JobRun {
        JobRun {
            started: "2026-12-02T10:00:00Z".into(),
            finished: Some("2026-12-02T10:00:01Z".into()),
            result: result.into(),
            exit_code: code,
            trigger: "timer".into(),
        }
    }

    fn timer(next: u64) -> Result<TimerState, String> {
        Ok(TimerState {
            active_state: ActiveState::Active,
            next_elapse_usec: next,
            last_trigger_usec: 0,
        })
    }

    fn seen<'a>(
        job: &'a JobConfig,
        last: Option<JobRun>,
        t: Result<TimerState, String>,
        now_usec: u64,
    ) -> Seen<'a> {
        Seen {
            name: "cleanup",
            job,
            running: false,
            last_run: last,
            timer: t,
            check_interval: Duration::from_secs(5),
            now: UNIX_EPOCH + Duration::from_micros(now_usec),
        }
    }

    #[test]
    fn a_job_never_run_and_not_yet_due_is_healthy() {
        let j = job();
        let s = evaluate(seen(&j, None, timer(100 * MIN), 99 * MIN));
        assert_eq!(s.health, HealthStatus::Healthy);
        assert_eq!(
            s.next_run.as_deref(),
            Some(rfc3339_usec(100 * MIN).as_str())
        );
        assert_eq!(s.unit, "hostd-job-cleanup.service");
    }

    #[test]
    fn a_timer_that_never_elapses_again_has_no_next_run_and_no_panic() {
        let j = job();
        let s = evaluate(seen(&j, None, timer(u64::MAX), 99 * MIN));
        assert_eq!(s.health, HealthStatus::Healthy);
        assert_eq!(s.next_run, None);
    }

    #[test]
    fn a_failed_last_run_degrades_with_the_job_and_exit_status_named() {
        let j = job();
        let s = evaluate(seen(
            &j,
            Some(run("exit-code", Some(3))),
            timer(100 * MIN),
            99 * MIN,
        ));
        assert_eq!(s.health, HealthStatus::Degraded);
        let reason = s.reason.unwrap_or_default();
        assert!(reason.starts_with("job cleanup:"), "{reason}");
        assert!(reason.contains("exit status 3"), "{reason}");
        let ok = evaluate(seen(
            &j,
            Some(run("success", Some(0))),
            timer(100 * MIN),
            99 * MIN,
        ));
        assert_eq!(ok.health, HealthStatus::Healthy);
        let slow = evaluate(seen(
            &j,
            Some(run("timeout", None)),
            timer(100 * MIN),
            99 * MIN,
        ));
        assert!(slow.reason.unwrap_or_default().ends_with("failed: timeout"));
    }

    #[test]
    fn an_overdue_run_degrades_after_the_grace_but_not_while_one_runs() {
        let j = job();
        let due = 100 * MIN;
        let within = evaluate(seen(&j, None, timer(due), due + 30_000_000));
        assert_eq!(within.health, HealthStatus::Healthy);
        let late = evaluate(seen(&j, None, timer(due), due + 2 * MIN));
        assert_eq!(late.health, HealthStatus::Degraded);
        assert!(late.reason.unwrap_or_default().contains("has not run"));
        let mut busy = seen(&j, None, timer(due), due + 2 * MIN);
        busy.running = true;
        assert_eq!(evaluate(busy).health, HealthStatus::Healthy);
    }

    #[test]
    fn a_stopped_timer_or_an_unreadable_one_degrades() {
        let j = job();
        let stopped = Ok(TimerState {
            active_state: ActiveState::Inactive,
            next_elapse_usec: 0,
            last_trigger_usec: 0,
        });
        let s = evaluate(seen(&j, None, stopped, MIN));
        assert!(s.reason.unwrap_or_default().contains("timer is inactive"));
        let s = evaluate(seen(&j, None, Err("no bus".into()), MIN));
        assert_eq!(s.health, HealthStatus::Degraded);
    }
}
