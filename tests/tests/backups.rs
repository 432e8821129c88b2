//! Issue 5, backups: `hostctl backup now --wait` writes a PostgreSQL dump,
//! Redis's RDB and the configured paths into a restic-format repository on
//! the AWS stand-in's S3, tagged with host, kind and release; the restore
//! drill passes; /health's backup component is healthy; and the stock
//! `restic` CLI, with the same password, lists the same snapshots, checks
//! every byte of the repository and dumps the database back.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, http_request};
use hostd_api::{BackupKind, BackupRun, BackupsList, HealthReport, HealthStatus};

const CONFIG: &str = "/etc/hostd/hostd.toml";
const PREFIX: &str = "/hostd/sandbox/";
const MOTO: &str = "http://10.231.0.2:5000";
const BUCKET: &str = "hostd-sandbox";

pub fn backup_now_writes_every_kind_that_restic_reads_checks_and_dumps(s: &Sandbox) -> Result<()> {
    let password = s
        .ssm_values(PREFIX)?
        .remove("backup_password")
        .context("backup_password is not in moto")?;
    let hostname = s.root_sh("hostname")?.trim().to_owned();
    let trial = format!("trial-{:x}", std::process::id());
    let edit = format!(
        "printf '[secrets]\\npath = \"{PREFIX}\"\\nbackup_password = \"backup_password\"\\n\
         [backup]\\nbucket = \"{BUCKET}\"\\nprefix = \"{trial}/{{hostname}}\"\\npaths = [\"/etc/hostd\"]\\n' >> {CONFIG}"
    );
    s.root_sh(&format!(
        "cp -p {CONFIG} {CONFIG}.good && {edit} && systemctl restart hostd"
    ))?;
    let result = (|| {
        s.wait_reconciled()?;
        let api = format!("{}:8080", s.address).parse()?;
        let note = http_request(api, "POST", "/notes", "kept by the backup")?;
        ensure!(
            note.status == 201,
            "POST /notes: {} {}",
            note.status,
            note.body
        );

        let out = s.hostctl(&["backup", "now", "--wait", "--json"])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "backup now: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run: BackupRun = last_run(&text)?;
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
            ensure!(snap.host == hostname, "snapshot host {}", snap.host);
            ensure!(
                snap.tags
                    .iter()
                    .any(|t| t == &format!("kind={}", snap.kind.as_str())),
                "tags {:?}",
                snap.tags
            );
            ensure!(snap.size > 0, "{} snapshot of 0 bytes", snap.kind.as_str());
        }

        let listed = s.hostctl(&["backups", "--json"])?;
        ensure!(listed.status.success(), "hostctl backups failed");
        let hosts: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout)?;
        let list: BackupsList = serde_json::from_value(
            hosts
                .first()
                .and_then(|h| h.get("backups"))
                .cloned()
                .context("no backups in hostctl backups --json")?,
        )?;
        let drill = list.last_drill.context("no restore drill recorded")?;
        ensure!(drill.ok && drill.checks_passed > 0, "drill: {drill:?}");
        let health: HealthReport =
            serde_json::from_str(&http_get(s.health_addr()?, "/health")?.body)?;
        let backup = health.components.iter().find(|c| c.name == "backup");
        ensure!(
            backup.is_some_and(|c| c.status == HealthStatus::Healthy),
            "/health backup component: {backup:?}"
        );

        // The independent reader.
        let repo = format!("s3:{MOTO}/{BUCKET}/{trial}/{hostname}");
        let snapshots = restic(&repo, &password, &["snapshots", "--json"])?;
        let ids: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&snapshots)?
            .iter()
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        for snap in &run.snapshots {
            ensure!(ids.contains(&snap.id), "restic does not list {}", snap.id);
        }
        restic(&repo, &password, &["check", "--read-data"])?;
        let pg = run
            .snapshots
            .iter()
            .find(|s| s.kind == BackupKind::Postgres)
            .context("no postgres snapshot")?;
        let dump = restic_bytes(&repo, &password, &["dump", &pg.id, "/api.dump"])?;
        ensure!(
            dump.starts_with(b"PGDMP"),
            "restic dump is not a pg_dump archive"
        );
        Ok(())
    })();
    let restored = s.root_sh(&format!(
        "mv {CONFIG}.good {CONFIG} && systemctl restart hostd"
    ));
    result?;
    restored?;
    s.wait_reconciled()
}

/// The run in `backup now --json` output: an array of per-host objects
/// with the run under `run`, or the run itself.
fn last_run(text: &str) -> Result<BackupRun> {
    let v: serde_json::Value = serde_json::from_str(text).context("backup now printed no JSON")?;
    let host = v.as_array().and_then(|a| a.first()).cloned().unwrap_or(v);
    let run = host.get("run").cloned().unwrap_or(host);
    serde_json::from_value(run).context("no backup run in the output")
}

fn restic(repo: &str, password: &str, args: &[&str]) -> Result<String> {
    Ok(String::from_utf8_lossy(&restic_bytes(repo, password, args)?).into_owned())
}

fn restic_bytes(repo: &str, password: &str, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new("restic")
        .args(["--no-cache", "-r", repo])
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .env("AWS_ACCESS_KEY_ID", "sandbox")
        .env("AWS_SECRET_ACCESS_KEY", "sandbox")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .context("run restic")?;
    ensure!(
        out.status.success(),
        "restic {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}
