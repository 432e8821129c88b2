//! Issue 5, faults that must lose nothing: the AWS stand-in unreachable
//! mid-backup (a clear failure, a retry scheduled, /health degraded, and a
//! valid repository), and hostd SIGKILLed mid-backup (the next backup
//! succeeds). Both end with the stock `restic check`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, poll};
use hostd_api::{HealthReport, HealthStatus};

use crate::backups::{backup_now, backups_list, wait_metric};
use crate::secrets_delivery::set_aws_link;

/// Fresh random bytes each time, so every run has data to upload.
const BULK: &str = "/srv/backup-bulk";

fn fresh_bulk(s: &Sandbox) -> Result<()> {
    s.root_sh(&format!(
        "mkdir -p {BULK} && head -c 64M /dev/urandom > {BULK}/blob"
    ))
    .map(|_| ())
}

/// `backup now` without waiting: the run has started when it returns.
fn start_backup(s: &Sandbox) -> Result<()> {
    let out = s.hostctl(&["backup", "now"])?;
    ensure!(
        out.status.success(),
        "backup now: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

pub fn an_aws_outage_mid_backup_fails_it_clearly_and_the_repository_stays_valid(
    s: &Sandbox,
) -> Result<()> {
    fresh_bulk(s)?;
    let result = s.with_backups("outage", &[BULK], "", |repo| {
        let first = backup_now(s)?;
        ensure!(first.ok == Some(true), "first backup: {:?}", first.error);
        fresh_bulk(s)?;
        start_backup(s)?;
        set_aws_link("down")?;
        // `backup now --wait` joins the run in progress and reports it.
        let failed = backup_now(s);
        let up = set_aws_link("up");
        let failed = failed?;
        up?;
        ensure!(
            failed.ok == Some(false),
            "the run survived the outage: {failed:?}"
        );
        let error = failed.error.clone().unwrap_or_default();
        ensure!(
            error.contains("S3") || error.contains("dispatch") || error.contains("timed out"),
            "the error does not say what failed: {error}"
        );
        // The next health round reports it.
        let reason = poll("/health backup degraded", Duration::from_secs(30), || {
            let report: HealthReport =
                serde_json::from_str(&http_get(s.health_addr()?, "/health")?.body)?;
            Ok(report
                .components
                .into_iter()
                .find(|c| c.name == "backup" && c.status == HealthStatus::Degraded)
                .map(|c| c.reason.unwrap_or_default()))
        })?;
        ensure!(reason.contains("failed"), "degraded, but why: {reason}");
        wait_metric(s, "hostd_backup_last_run_success 0")?;
        // The retry is scheduled (15 minutes), not the next day.
        let list = backups_list(s)?;
        let next = list.next_run.context("no next run")?;
        let next = humantime::parse_rfc3339(&next)?;
        let within = next.duration_since(SystemTime::now()).unwrap_or_default();
        ensure!(
            within <= Duration::from_secs(16 * 60),
            "next run in {within:?}"
        );
        repo.restic(&["check"])?;
        let again = backup_now(s)?;
        ensure!(
            again.ok == Some(true),
            "backup after the outage: {:?}",
            again.error
        );
        repo.restic(&["check", "--read-data"])?;
        Ok(())
    });
    let _ = set_aws_link("up");
    let cleaned = s.root_sh(&format!("rm -rf {BULK}"));
    result?;
    cleaned.map(|_| ())
}

pub fn a_sigkilled_hostd_mid_backup_is_followed_by_a_good_backup(s: &Sandbox) -> Result<()> {
    fresh_bulk(s)?;
    let result = s.with_backups("killed-backup", &[BULK], "", |repo| {
        start_backup(s)?;
        s.sigkill_hostd()?;
        poll("hostd to restart", Duration::from_secs(60), || {
            Ok((s.unit_property("hostd.service", "ActiveState")? == "active").then_some(()))
        })?;
        s.wait_reconciled()?;
        let next = backup_now(s)?;
        ensure!(
            next.ok == Some(true),
            "the backup after the kill: {:?}",
            next.error
        );
        repo.restic(&["check", "--read-data"])?;
        Ok(())
    });
    let cleaned = s.root_sh(&format!("rm -rf {BULK}"));
    result?;
    cleaned.map(|_| ())
}

/// One part that cannot be backed up (Redis stopped) fails the run naming
/// it, in words, and the others are backed up anyway; /health says which
/// part, not the error's text.
pub fn a_stopped_redis_fails_only_its_part_of_a_backup(s: &Sandbox) -> Result<()> {
    s.with_backups("partial", &[], "", |_| {
        let stop = s.hostctl(&["stop", "redis"])?;
        ensure!(
            stop.status.success(),
            "stop redis: {}",
            String::from_utf8_lossy(&stop.stderr)
        );
        let run = backup_now(s);
        let start = s.hostctl(&["start", "redis"]);
        let run = run?;
        ensure!(start?.status.success(), "redis did not start again");
        ensure!(run.ok == Some(false), "a run without Redis succeeded");
        ensure!(
            run.incomplete == ["redis"],
            "incomplete: {:?}",
            run.incomplete
        );
        let error = run.error.unwrap_or_default();
        ensure!(
            error.contains(
                "redis not backed up: cannot reach Redis at 127.0.0.1:6379: connection refused"
            ),
            "error: {error}"
        );
        ensure!(
            run.snapshots
                .iter()
                .any(|s| s.kind == hostd_api::BackupKind::Postgres),
            "PostgreSQL was not backed up: {:?}",
            run.snapshots
        );
        let reason = poll("/health names the part", Duration::from_secs(30), || {
            let report: HealthReport =
                serde_json::from_str(&http_get(s.health_addr()?, "/health")?.body)?;
            Ok(report
                .components
                .into_iter()
                .find(|c| c.name == "backup")
                .and_then(|c| c.reason))
        })?;
        ensure!(
            reason.contains("could not back up redis") && !reason.contains("refused"),
            "/health: {reason}"
        );
        Ok(())
    })
}
