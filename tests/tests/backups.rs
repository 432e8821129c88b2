//! Issue 5, backups: `hostctl backup now --wait` writes a PostgreSQL dump,
//! Redis's RDB and the configured paths into a restic-format repository on
//! the AWS stand-in's S3, tagged with host, kind and release; the restore
//! drill passes; /health's backup component is healthy; and the stock
//! `restic` CLI, with the same password, lists the same snapshots, checks
//! every byte of the repository and dumps the database back.

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, http_request};
use hostd_api::{BackupKind, BackupRun, BackupsList, HealthReport, HealthStatus};

pub fn backup_now_writes_every_kind_that_restic_reads_checks_and_dumps(s: &Sandbox) -> Result<()> {
    s.with_backups("trial", &["/etc/hostd"], "", |repo| {
        let api = format!("{}:8080", s.address).parse()?;
        let note = http_request(api, "POST", "/notes", "kept by the backup")?;
        ensure!(
            note.status == 201,
            "POST /notes: {} {}",
            note.status,
            note.body
        );

        let run = backup_now(s)?;
        ensure!(run.ok == Some(true), "the run failed: {:?}", run.error);
        let kinds: Vec<BackupKind> = run.snapshots.iter().map(|s| s.kind).collect();
        for kind in [BackupKind::Postgres, BackupKind::Redis, BackupKind::Files] {
            ensure!(
                kinds.contains(&kind),
                "no {} snapshot in {kinds:?}",
                kind.as_str()
            );
        }
        for snap in &run.snapshots {
            ensure!(snap.host == repo.hostname, "snapshot host {}", snap.host);
            ensure!(
                snap.tags
                    .iter()
                    .any(|t| t == &format!("kind={}", snap.kind.as_str())),
                "tags {:?}",
                snap.tags
            );
            ensure!(snap.size > 0, "{} snapshot of 0 bytes", snap.kind.as_str());
        }

        let list = backups_list(s)?;
        let drill = list.last_drill.context("no restore drill recorded")?;
        ensure!(drill.ok && drill.checks_passed > 0, "drill: {drill:?}");
        let health: HealthReport =
            serde_json::from_str(&http_get(s.health_addr()?, "/health")?.body)?;
        let backup = health.components.iter().find(|c| c.name == "backup");
        ensure!(
            backup.is_some_and(|c| c.status == HealthStatus::Healthy),
            "/health backup component: {backup:?}"
        );
        wait_metric(s, "hostd_backup_last_run_success 1")?;
        wait_metric(s, "hostd_backup_last_drill_success 1")?;

        // The independent reader.
        let snapshots = repo.restic(&["snapshots", "--json"])?;
        let ids: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&snapshots)?
            .iter()
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        for snap in &run.snapshots {
            ensure!(ids.contains(&snap.id), "restic does not list {}", snap.id);
        }
        repo.restic(&["check", "--read-data"])?;
        let pg = run
            .snapshots
            .iter()
            .find(|s| s.kind == BackupKind::Postgres)
            .context("no postgres snapshot")?;
        let dump = repo.restic_bytes(&["dump", &pg.id, "/api.dump"])?;
        ensure!(
            dump.starts_with(b"PGDMP"),
            "restic dump is not a pg_dump archive"
        );
        Ok(())
    })
}

/// Waits for a /metrics line starting with `line` (figures refresh with
/// each health round).
pub fn wait_metric(s: &Sandbox, line: &str) -> Result<()> {
    hostctl_tests::poll(
        &format!("`{line}` in /metrics"),
        std::time::Duration::from_secs(30),
        || {
            let body = http_get(s.health_addr()?, "/metrics")?.body;
            Ok(body.lines().any(|l| l.starts_with(line)).then_some(()))
        },
    )
}

/// `hostctl backup now --wait --json`: the run it reports.
pub fn backup_now(s: &Sandbox) -> Result<BackupRun> {
    let out = s.hostctl(&["backup", "now", "--wait", "--json"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let run = last_run(&text)
        .with_context(|| format!("backup now: {text}{}", String::from_utf8_lossy(&out.stderr)))?;
    ensure!(
        out.status.success() == (run.ok == Some(true)),
        "backup now exited {} for a run with ok = {:?}",
        out.status,
        run.ok
    );
    Ok(run)
}

/// `hostctl backups --json` of the one host.
pub fn backups_list(s: &Sandbox) -> Result<BackupsList> {
    let listed = s.hostctl(&["backups", "--json"])?;
    ensure!(
        listed.status.success(),
        "hostctl backups failed: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let hosts: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout)?;
    Ok(serde_json::from_value(
        hosts
            .first()
            .and_then(|h| h.get("backups"))
            .cloned()
            .context("no backups in hostctl backups --json")?,
    )?)
}

/// The run in `backup now --json` output: an array of per-host objects
/// with the run under `run`, or the run itself.
fn last_run(text: &str) -> Result<BackupRun> {
    let v: serde_json::Value = serde_json::from_str(text).context("backup now printed no JSON")?;
    let host = v.as_array().and_then(|a| a.first()).cloned().unwrap_or(v);
    let run = host.get("run").cloned().unwrap_or(host);
    serde_json::from_value(run).context("no backup run in the output")
}
