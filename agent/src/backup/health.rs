//! The `backup` component of /health: a backup that silently stopped
//! working must be impossible to miss. Degraded when the last run or drill
//! failed, or the last success of either is older than `backup.max_age`
//! (a host that never backed up counts from when backups were configured).

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

fn age(t: Option<&str>, now: SystemTime) -> Option<Duration> {
    let t = humantime::parse_rfc3339(t?).ok()?;
    Some(now.duration_since(t).unwrap_or_default())
}

fn problem(st: &BackupState, max_age: Duration, now: SystemTime) -> Option<String> {
    if let Some(run) = st.last_run.as_ref().filter(|r| r.ok == Some(false)) {
        return Some(format!(
            "last backup failed at {}: {}",
            run.finished.as_deref().unwrap_or("?"),
            run.error.as_deref().unwrap_or("unknown error")
        ));
    }
    if let Some(d) = st.last_drill.as_ref().filter(|d| !d.ok) {
        return Some(format!(
            "last restore drill failed at {}: {}",
            d.finished,
            d.error.as_deref().unwrap_or("unknown error")
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
            snapshots: vec![],
        }
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
        assert!(
            c.reason
                .as_deref()
                .is_some_and(|r| r.contains("no such database")),
            "{c:?}"
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
