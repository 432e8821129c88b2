//! Issue 5, restores: `hostctl restore` puts a backup run back (PostgreSQL
//! into a new database swapped in, Redis's RDB, the paths) with the API
//! stopped and started healthy again; an unknown snapshot stops nothing;
//! hostd killed mid-restore leaves the live database as it was and the
//! next hostd puts the host back.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, poll};
use hostd_api::{BackupKind, HealthReport, HealthStatus, RestoreEvent};

use crate::backups::backup_now;
use hostctl_tests::backup::append_backup_config;

pub(crate) const PSQL: &str = "psql -XAtq 'host=/run/postgresql user=postgres dbname=api'";
const FILES: &str = "/srv/restore-trial";

pub(crate) fn sql(s: &Sandbox, query: &str) -> Result<String> {
    Ok(s.root_sh(&format!("{PSQL} -c \"{query}\""))?
        .trim()
        .to_owned())
}

pub(crate) fn note_count(s: &Sandbox, body: &str) -> Result<u32> {
    Ok(sql(
        s,
        &format!("SELECT count(*) FROM notes WHERE body = '{body}'"),
    )?
    .parse()?)
}

fn events(stdout: &[u8]) -> Result<Vec<RestoreEvent>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not an event: {l}")))
        .collect()
}

pub(crate) fn leftovers(s: &Sandbox) -> Result<String> {
    let dbs = s.root_sh(
        "psql -XAtq 'host=/run/postgresql user=postgres dbname=postgres' -c \
         \"SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'hostd_%'\"",
    )?;
    let paths = s.root_sh("ls -d /srv/*.hostd-* /data/redis/*.hostd-* 2>/dev/null || true")?;
    Ok(format!("{}{}", dbs.trim(), paths.trim()))
}

/// Waits for hostd to remove a marker file it clears when done.
pub(crate) fn marker_cleared(s: &Sandbox, path: &str) -> Result<()> {
    poll(&format!("{path} cleared"), Duration::from_secs(60), || {
        let marker = s.root_sh(&format!("ls {path} 2>/dev/null || true"))?;
        Ok(marker.trim().is_empty().then_some(()))
    })
}

pub(crate) fn api_healthy(s: &Sandbox) -> Result<()> {
    poll(
        "the API healthy in /health",
        Duration::from_secs(60),
        || {
            let report: HealthReport =
                serde_json::from_str(&http_get(s.health_addr()?, "/health")?.body)?;
            Ok((report.status != HealthStatus::Unhealthy
                && s.unit_property("api@1.service", "ActiveState")? == "active")
                .then_some(()))
        },
    )
}

pub fn restore_latest_puts_back_postgres_redis_and_files(s: &Sandbox) -> Result<()> {
    s.root_sh(&format!(
        "mkdir -p {FILES} && echo before > {FILES}/a && rm -f {FILES}/new && \
         redis-cli SET restore-trial before"
    ))?;
    let result = s.with_backups("restore", &[FILES], "", |_| {
        sql(s, "INSERT INTO notes (body) VALUES ('in the backup')")?;
        let run = backup_now(s)?;
        ensure!(run.ok == Some(true), "backup: {:?}", run.error);
        // Everything changes after the backup.
        sql(s, "INSERT INTO notes (body) VALUES ('after the backup')")?;
        s.root_sh(&format!(
            "echo after > {FILES}/a && touch {FILES}/new && redis-cli SET restore-trial after"
        ))?;

        // The plan, and nothing changed by it.
        let dry = s.hostctl(&["restore", "latest", "--dry-run", "--json"])?;
        ensure!(
            dry.status.success(),
            "dry run: {}",
            String::from_utf8_lossy(&dry.stderr)
        );
        let plan = events(&dry.stdout)?
            .into_iter()
            .find_map(|e| match e {
                RestoreEvent::Plan { plan, .. } => Some(plan),
                _ => None,
            })
            .context("no plan in the dry run")?;
        let kinds: Vec<BackupKind> = plan.snapshots.iter().map(|s| s.kind).collect();
        ensure!(
            kinds == [BackupKind::Postgres, BackupKind::Redis, BackupKind::Files],
            "planned kinds {kinds:?}"
        );
        ensure!(plan.stop == ["api"], "services to stop: {:?}", plan.stop);
        ensure!(
            note_count(s, "after the backup")? == 1,
            "the dry run changed data"
        );

        // An unknown snapshot: a clear error, nothing stopped.
        let api_before = s.unit_property("api@1.service", "InvocationID")?;
        let unknown = s.hostctl(&["restore", "0123456789abcdef", "--yes"])?;
        let text = String::from_utf8_lossy(&unknown.stderr);
        ensure!(!unknown.status.success(), "an unknown snapshot restored");
        ensure!(text.contains("hostctl backups"), "unknown snapshot: {text}");
        ensure!(
            s.unit_property("api@1.service", "InvocationID")? == api_before,
            "an unknown snapshot restarted the API"
        );

        let out = s.hostctl(&["restore", "latest", "--yes", "--json"])?;
        let evs = events(&out.stdout)?;
        let finished = evs.last().cloned();
        ensure!(
            out.status.success()
                && matches!(finished, Some(RestoreEvent::Finished { ok: true, .. })),
            "restore: {finished:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for step in [
            "stop api",
            "restore postgres api",
            "restore redis",
            "swap",
            "start api",
        ] {
            ensure!(
                evs.iter()
                    .any(|e| matches!(e, RestoreEvent::StepDone { step: st, .. } if st == step)),
                "no `{step}` step in {evs:?}"
            );
        }

        ensure!(
            note_count(s, "in the backup")? >= 1,
            "the backed-up note is gone"
        );
        ensure!(
            note_count(s, "after the backup")? == 0,
            "the later note survived"
        );
        let owner = sql(
            s,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'notes'",
        )?;
        ensure!(owner == "api", "notes is owned by {owner}");
        let value = s.root_sh("redis-cli GET restore-trial")?;
        ensure!(value.trim() == "before", "redis restore-trial = {value}");
        let a = s.root_sh(&format!("cat {FILES}/a; ls {FILES}"))?;
        ensure!(
            a.starts_with("before") && !a.contains("new"),
            "{FILES}: {a}"
        );
        api_healthy(s)?;
        // The previous copies go after the restore has answered.
        poll(
            "the previous copies dropped",
            Duration::from_secs(60),
            || Ok(leftovers(s)?.is_empty().then_some(())),
        )?;
        Ok(())
    });
    let cleaned = s.root_sh(&format!("rm -rf {FILES}; redis-cli DEL restore-trial"));
    result?;
    cleaned.map(|_| ())
}

pub fn a_killed_restore_leaves_the_live_database_intact(s: &Sandbox) -> Result<()> {
    // Enough rows that pg_restore is still at work when hostd dies.
    sql(
        s,
        "CREATE TABLE restore_bulk AS SELECT g, md5(g::text) AS h FROM generate_series(1, 1500000) g",
    )?;
    let result = s.with_backups("killed-restore", &[], "redis = false\n", |_| {
        let run = backup_now(s)?;
        ensure!(run.ok == Some(true), "backup: {:?}", run.error);
        sql(
            s,
            "INSERT INTO notes (body) VALUES ('live when the restore died')",
        )?;

        let mut child = s
            .hostctl_command(&["restore", "latest", "--yes", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut saw_restore = false;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if line.contains("\"step\":\"restore postgres api\"") {
                saw_restore = true;
                s.sigkill_hostd()?;
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        ensure!(saw_restore, "the restore never reached PostgreSQL");

        // The next hostd (systemd restarts it) puts the host back.
        poll("hostd to restart", Duration::from_secs(60), || {
            Ok((s.unit_property("hostd.service", "ActiveState")? == "active").then_some(()))
        })?;
        poll(
            "the staging database dropped",
            Duration::from_secs(60),
            || Ok(leftovers(s)?.is_empty().then_some(())),
        )?;
        api_healthy(s)?;
        ensure!(
            note_count(s, "live when the restore died")? == 1,
            "the live database lost a row"
        );
        // The recovery clears its marker last, after starting the API
        // again, which the manager may already have done by itself.
        marker_cleared(s, "/var/lib/hostd/restore.json")?;
        Ok(())
    });
    let cleaned = sql(s, "DROP TABLE IF EXISTS restore_bulk");
    result?;
    cleaned.map(|_| ())
}

/// The runbook as one step: the instance is lost; a new one from the same
/// image (another host, another hostname, its data volume empty) is given
/// the configuration with `backup.host` naming the lost host and
/// `restore_on_empty`. hostd-data.service creates a new cluster on /data
/// and marks it fresh; hostd restores the latest backup by itself and the
/// API serves it.
pub fn a_new_instance_with_an_empty_volume_restores_the_latest_backup(s: &Sandbox) -> Result<()> {
    s.with_backups("new-instance", &[], "", |repo| {
        sql(
            s,
            "INSERT INTO notes (body) VALUES ('before the instance was lost')",
        )?;
        let run = backup_now(s)?;
        ensure!(run.ok == Some(true), "backup: {:?}", run.error);

        let new = Sandbox::up(&format!("{}n", s.name))?;
        let hostname = new.root_sh("hostname")?.trim().to_owned();
        ensure!(
            hostname != repo.hostname,
            "the new instance has the lost one's hostname"
        );
        // Its data volume is empty (the image's /data hidden by a new EBS
        // volume); the configuration names the lost host's backups.
        let config = append_backup_config(
            &repo.prefix,
            &format!("host = \"{}\"\nrestore_on_empty = true", repo.hostname),
        );
        new.root_sh(&format!(
            "systemctl stop hostd.service 'api@*.service' api.socket postgresql@15-main.service \
             redis-server.service hostd-data.service && rm -rf /data/postgresql /data/redis && \
             test -z \"$(ls -A /data)\" && {config}"
        ))?;
        let booted = std::time::Instant::now();
        // What its boot starts: everything enabled, hostd-data first.
        new.root_sh("systemctl start multi-user.target")?;
        poll(
            "the lost host's note served on the new one",
            Duration::from_secs(300),
            || Ok((note_count(&new, "before the instance was lost")? == 1).then_some(())),
        )?;
        api_healthy(&new)?;
        marker_cleared(&new, "/data/.hostd-fresh")?;
        // A figure for the README's runbook, not an assertion.
        eprintln!(
            "empty volume to restored and healthy: {:.1} s",
            booted.elapsed().as_secs_f64()
        );
        let journal = new.root_sh("journalctl -u hostd -u hostd-data --no-pager -o cat")?;
        ensure!(
            journal.contains("creating the PostgreSQL cluster in /data/postgresql/15/main"),
            "{journal}"
        );
        ensure!(journal.contains("restoring the latest backup"), "{journal}");
        ensure!(journal.contains("restore finished"), "{journal}");
        // A later start does not restore again: the marker is gone.
        sql(
            &new,
            "INSERT INTO notes (body) VALUES ('after the recovery')",
        )?;
        new.root_sh("systemctl restart hostd")?;
        new.wait_reconciled()?;
        ensure!(
            note_count(&new, "after the recovery")? == 1,
            "a restart restored over new data"
        );
        Ok(())
    })
}

/// A repository is not trusted: snapshots planted with the stock restic
/// CLI (a database name that is SQL, a path outside `backup.paths`) are
/// refused by `restore ID`, `restore latest` and `restore_on_empty` with
/// nothing changed.
pub fn snapshots_planted_in_the_repository_are_refused(s: &Sandbox) -> Result<()> {
    s.with_backups("planted", &[FILES], "restore_on_empty = true\n", |repo| {
        s.root_sh(&format!("mkdir -p {FILES} && echo kept > {FILES}/a"))?;
        let run = backup_now(s)?;
        ensure!(run.ok == Some(true), "backup: {:?}", run.error);
        let host = repo.hostname.as_str();
        let evil_db = "x; COPY notes TO PROGRAM 'touch /tmp/pwned'";
        let planted = repo.restic(&[
            "backup",
            "--json",
            "--host",
            host,
            "--tag",
            "hostd",
            "--tag",
            "kind=postgres",
            "--tag",
            &format!("db={evil_db}"),
            "--tag",
            "run=planted",
            "/etc/hostname",
        ])?;
        let id = planted
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v.get("snapshot_id")?.as_str().map(str::to_owned))
            .context("restic printed no snapshot id")?;
        let api_before = s.unit_property("api@1.service", "InvocationID")?;
        let by_id = s.hostctl(&["restore", &id[..8], "--yes"])?;
        let said = String::from_utf8_lossy(&by_id.stderr);
        ensure!(!by_id.status.success(), "the planted database restored");
        ensure!(
            said.contains("would restore database") && said.contains("COPY notes TO PROGRAM"),
            "restore by id: {said}"
        );

        // Newer than the real files snapshot: what `latest` takes.
        repo.restic(&[
            "backup",
            "--host",
            host,
            "--tag",
            "hostd",
            "--tag",
            "kind=files",
            "--tag",
            "run=planted-files",
            "/etc/systemd/system",
        ])?;
        let latest = s.hostctl(&["restore", "latest", "--yes"])?;
        let said = String::from_utf8_lossy(&latest.stderr);
        ensure!(!latest.status.success(), "the planted path restored");
        ensure!(
            said.contains("would restore path `/etc/systemd/system`"),
            "restore latest: {said}"
        );
        ensure!(
            s.unit_property("api@1.service", "InvocationID")? == api_before,
            "a refused restore restarted the API"
        );

        // A fresh volume's unattended restore refuses the same way.
        s.root_sh("touch /data/.hostd-fresh && systemctl restart hostd")?;
        marker_cleared(s, "/data/.hostd-fresh")?;
        let journal = s.root_sh("journalctl -u hostd --since -2min --no-pager")?;
        ensure!(
            journal.contains("restore_on_empty refused the latest backup"),
            "restore_on_empty: {journal}"
        );
        let a = s.root_sh(&format!("cat {FILES}/a"))?;
        ensure!(a.trim() == "kept", "{FILES}/a = {a}");
        ensure!(
            s.root_sh("ls /tmp/pwned 2>/dev/null || true")?
                .trim()
                .is_empty(),
            "the planted SQL ran"
        );

        Ok(())
    })
}

/// Redis's RDB is where hostd.toml says (`backup.redis_rdb`), whatever
/// Redis answers: a Redis that keeps it elsewhere (`CONFIG SET dir`, open
/// to any client with its password on Redis 6) is refused by a backup and
/// by a restore, naming both paths.
pub fn a_redis_keeping_its_rdb_elsewhere_is_refused(s: &Sandbox) -> Result<()> {
    s.with_backups(
        "rdb-elsewhere",
        &[],
        "redis_rdb = \"/data/redis/elsewhere.rdb\"\n",
        |_| {
            let run = backup_now(s)?;
            ensure!(run.ok == Some(false), "a backup read Redis's file");
            ensure!(
                run.error.as_deref().is_some_and(|e| e.contains(
                    "Redis keeps its RDB at /data/redis/dump.rdb, not at backup.redis_rdb (/data/redis/elsewhere.rdb)"
                )),
                "backup error: {:?}",
                run.error
            );
            ensure!(
                !run.snapshots.iter().any(|s| s.kind == BackupKind::Redis),
                "a Redis snapshot was written"
            );
            Ok(())
        },
    )
}
