//! The `backup` component of /health: a backup that silently stopped
//! working must be impossible to miss. Degraded when the last run or drill
//! failed, or the last success of either is older than `backup.max_age`
//! (a host that never backed up counts from when backups were configured).
//! /health is public: the reason says what failed and when, never the
//! error's text (a repository path, a bucket, a server's words); `hostctl
//! backups` shows that to the operator.

use std::time::{Duration, SystemTime};

use hostd_api::{ComponentHealth, HealthStatus};

use super::BackupState;

pub fn component(state: &BackupState, max_age: Duration, now: SystemTime) -> ComponentHealth {
    let problem = problem(state, max_age, now);
    ComponentHealth {
        name: "backup".to_owned(),
        status: if problem.is_some() {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        },
        reason: problem,
    }
}

/// The figures /metrics and EMF publish, so an alarm can fire on them
/// directly (age above a day, last run failed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupFigures {
    /// Since the last successful backup; since backups were configured
    /// when there was none, so a host that never backed up ages too.
    pub age_seconds: Option<f64>,
    pub drill_age_seconds: Option<f64>,
    pub last_run_ok: Option<bool>,
    pub last_drill_ok: Option<bool>,
    /// What the last run added to the repository, after dedup and
    /// compression.
    pub last_run_added_bytes: u64,
    pub running: bool,
}

pub fn figures(st: &BackupState, now: SystemTime) -> BackupFigures {
    let since = |t: Option<&str>| age(t, now).map(|a| a.as_secs_f64());
    BackupFigures {
        age_seconds: since(st.last_success.as_deref())
            .or_else(|| since(st.configured_since.as_deref())),
        drill_age_seconds: since(st.last_drill_success.as_deref())
            .or_else(|| since(st.configured_since.as_deref())),
        last_run_ok: st.last_run.as_ref().and_then(|r| r.ok),
        last_drill_ok: st.last_drill.as_ref().map(|d| d.ok),
        last_run_added_bytes: st
            .last_run
            .iter()
            .flat_map(|r| &r.snapshots)
            .map(|s| s.added)
            .sum(),
        running: st.running,
    }
}

fn age(t: Option<&str>, now: SystemTime) -> Option<Duration> {
    let t = humantime::parse_rfc3339(t?).ok()?;
    Some(now.duration_since(t).unwrap_or_default())
}

fn problem(st: &BackupState, max_age: Duration, now: SystemTime) -> Option<String> {
    if let Some(run) = st.last_run.as_ref().filter(|r| r.ok == Some(false)) {
        let when = run.finished.as_deref().unwrap_or("?");
        if !run.incomplete.is_empty() {
            return Some(format!(
                "the backup at {when} could not back up {} (`hostctl backups` says why)",
                run.incomplete.join(", ")
            ));
        }
        return Some(format!(
            "last backup failed at {when} (`hostctl backups` says why)"
        ));
    }
    if let Some(d) = st.last_drill.as_ref().filter(|d| !d.ok) {
        return Some(format!(
            "last restore drill failed at {} (`hostctl backups` says why)",
            d.finished
        ));
    }
    let hours = max_age.as_secs() / 3600;
    let since = st.configured_since.as_deref();
    match (st.last_success.as_deref(), age(since, now)) {
        (None, Some(a)) if a > max_age => {
            return Some(format!(
                "no successful backup in the {hours} h since backups were configured"
            ));
        }
        (Some(t), _) if age(Some(t), now).is_some_and(|a| a > max_age) => {
            return Some(format!(
                "last successful backup {t} is older than {hours} h"
            ));
        }
        _ => {}
    }
    if let Some(t) = st.last_drill_success.as_deref()
        && age(Some(t), now).is_some_and(|a| a > max_age)
    {
        return Some(format!(
            "last successful restore drill {t} is older than {hours} h"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use hostd_api::{BackupRun, DrillRun};

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn run(ok: bool, finished: &str) -> BackupRun {
        BackupRun {
            trigger: "schedule".into(),
            started: finished.into(),
            finished: Some(finished.into()),
            ok: Some(ok),
            error: (!ok).then(|| "pg_dump of api exit status: 1: no such database".into()),
            incomplete: Vec::new(),
            snapshots: vec![],
        }
    }

    #[test]
    fn figures_age_from_the_last_success_or_from_configuration() {
        let now = at("2026-11-22T12:00:00Z");
        let mut st = BackupState {
            configured_since: Some("2026-11-22T00:00:00Z".into()),
            ..BackupState::default()
        };
        let f = figures(&st, now);
        assert_eq!(f.age_seconds, Some(43_200.0));
        assert_eq!(f.last_run_ok, None);
        st.last_run = Some(run(false, "2026-11-22T11:00:00Z"));
        st.last_success = Some("2026-11-22T11:00:00Z".into());
        let f = figures(&st, now);
        assert_eq!(f.age_seconds, Some(3600.0));
        assert_eq!(f.last_run_ok, Some(false));
    }

    #[test]
    fn fresh_success_is_healthy_and_age_or_failure_degrades_with_the_reason() {
        let now = at("2026-11-22T12:00:00Z");
        let max = Duration::from_secs(26 * 3600);
        let mut st = BackupState {
            configured_since: Some("2026-11-01T00:00:00Z".into()),
            last_run: Some(run(true, "2026-11-22T03:10:00Z")),
            last_success: Some("2026-11-22T03:10:00Z".into()),
            ..BackupState::default()
        };
        assert_eq!(component(&st, max, now).status, HealthStatus::Healthy);

        let later = now + 2 * DAY;
        let c = component(&st, max, later);
        assert_eq!(c.status, HealthStatus::Degraded);
        assert!(
            c.reason
                .as_deref()
                .is_some_and(|r| r.contains("older than 26 h")),
            "{c:?}"
        );

        st.last_run = Some(run(false, "2026-11-22T11:00:00Z"));
        let c = component(&st, max, now);
        assert_eq!(
            c.reason.as_deref(),
            Some("last backup failed at 2026-11-22T11:00:00Z (`hostctl backups` says why)"),
        );

        st.last_run = Some(run(true, "2026-11-22T11:00:00Z"));
        st.last_drill = Some(DrillRun {
            started: "x".into(),
            finished: "2026-11-22T11:05:00Z".into(),
            ok: false,
            snapshot: None,
            database: "api".into(),
            checks_passed: 0,
            error: Some("notes has rows in api but none in the restored dump".into()),
        });
        let c = component(&st, max, now);
        assert!(
            c.reason
                .as_deref()
                .is_some_and(|r| r.contains("restore drill failed")),
            "{c:?}"
        );
    }

    #[test]
    fn a_host_that_never_backed_up_degrades_once_max_age_has_passed() {
        let max = Duration::from_secs(26 * 3600);
        let st = BackupState {
            configured_since: Some("2026-11-20T00:00:00Z".into()),
            ..BackupState::default()
        };
        assert_eq!(
            component(&st, max, at("2026-11-20T12:00:00Z")).status,
            HealthStatus::Healthy
        );
        assert_eq!(
            component(&st, max, at("2026-11-22T00:00:00Z")).status,
            HealthStatus::Degraded
        );
    }
}
