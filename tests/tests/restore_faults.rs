//! Issue 17 (8, 11): a restore is all or nothing across kinds. hostd
//! killed while Redis is stopped for its swap, or before the files swap
//! with the database and Redis already swapped, comes back with every
//! service running and every kind as it was; a swap that fails swaps the
//! others back; a mount point and a file system without room are refused
//! before anything stops. Points are reached with the debug build's
//! /run/hostd/restore-fault (see agent/src/restore/faults.rs).

use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, poll};

use crate::backups::backup_now;
use crate::restores::{api_healthy, leftovers, marker_cleared, note_count, sql};

const FILES: &str = "/srv/restore-trial";
const FAULT: &str = "/run/hostd/restore-fault";
const PAUSED: &str = "/run/hostd/restore-paused";

/// The note each trial writes after its backup: its own, because a
/// rolled-back restore leaves the previous trial's note in place.
fn later_note(trial: &str) -> String {
    format!("{trial}: after the backup")
}

/// A backup of "before" everywhere, then "after" everywhere live.
fn backed_up_then_changed(s: &Sandbox, trial: &str) -> Result<()> {
    s.root_sh(&format!(
        "mkdir -p {FILES} && echo before > {FILES}/a && redis-cli SET restore-trial before"
    ))?;
    sql(
        s,
        &format!("INSERT INTO notes (body) VALUES ('{trial}: in the backup')"),
    )?;
    let run = backup_now(s)?;
    ensure!(run.ok == Some(true), "backup: {:?}", run.error);
    sql(
        s,
        &format!("INSERT INTO notes (body) VALUES ('{}')", later_note(trial)),
    )?;
    s.root_sh(&format!(
        "echo after > {FILES}/a && redis-cli SET restore-trial after"
    ))?;
    Ok(())
}

/// Every kind still holds the live data from before the restore.
fn every_kind_as_it_was(s: &Sandbox, trial: &str, when: &str) -> Result<()> {
    let later = note_count(s, &later_note(trial))?;
    ensure!(
        later == 1,
        "{when}: PostgreSQL holds {later} copies of the note written after the backup (1 expected)"
    );
    let redis = s.root_sh("redis-cli GET restore-trial")?;
    ensure!(redis.trim() == "after", "{when}: Redis has {redis}");
    let file = s.root_sh(&format!("cat {FILES}/a"))?;
    ensure!(file.trim() == "after", "{when}: {FILES}/a has {file}");
    Ok(())
}

fn every_service_running(s: &Sandbox, when: &str) -> Result<()> {
    for unit in [
        "redis-server.service",
        "postgresql@15-main.service",
        "api@1.service",
    ] {
        poll(
            &format!("{when}: {unit} active"),
            Duration::from_secs(60),
            || Ok((s.unit_property(unit, "ActiveState")? == "active").then_some(())),
        )?;
    }
    api_healthy(s)
}

fn start_restore(s: &Sandbox) -> Result<Child> {
    Ok(s.hostctl_command(&["restore", "latest", "--yes", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

fn end(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn clean_up(s: &Sandbox, trial: &str) -> Result<()> {
    sql(
        s,
        &format!("DELETE FROM notes WHERE body LIKE '{trial}: %'"),
    )?;
    s.root_sh(&format!(
        "rm -rf {FILES} {FAULT}; redis-cli DEL restore-trial"
    ))
    .map(drop)
}

pub fn a_restore_killed_mid_swap_comes_back_with_every_kind_old_and_running(
    s: &Sandbox,
) -> Result<()> {
    const TRIAL: &str = "killed-swap";
    let result = s.with_backups(TRIAL, &[FILES], "", |_| {
        backed_up_then_changed(s, TRIAL)?;
        // Redis stopped for its swap with the database swapped; then the
        // database and Redis swapped with the files not yet.
        for point in ["redis stopped", &format!("swap {FILES}")] {
            s.root_sh(&format!("printf 'pause {point}' > {FAULT}"))?;
            let child = start_restore(s)?;
            let paused = poll(
                &format!("the restore to pause at `{point}`"),
                Duration::from_secs(120),
                || {
                    let at = s.root_sh(&format!("cat {PAUSED} 2>/dev/null || true"))?;
                    Ok((at.trim() == point).then_some(()))
                },
            );
            let killed = paused.and_then(|()| s.sigkill_hostd());
            let cleared = s.root_sh(&format!("rm -f {FAULT} {PAUSED}"));
            end(child);
            killed?;
            cleared?;
            poll("hostd to restart", Duration::from_secs(60), || {
                Ok((s.unit_property("hostd.service", "ActiveState")? == "active").then_some(()))
            })?;
            marker_cleared(s, "/var/lib/hostd/restore.json")?;
            every_service_running(s, point)?;
            every_kind_as_it_was(s, TRIAL, point)?;
            let left = leftovers(s)?;
            ensure!(left.is_empty(), "{point}: left behind: {left}");
        }
        Ok(())
    });
    let cleaned = clean_up(s, TRIAL);
    result?;
    cleaned
}

pub fn a_failed_files_swap_swaps_the_database_and_redis_back(s: &Sandbox) -> Result<()> {
    const TRIAL: &str = "failed-swap";
    let result = s.with_backups(TRIAL, &[FILES], "", |_| {
        backed_up_then_changed(s, TRIAL)?;
        s.root_sh(&format!("printf 'fail swap {FILES}' > {FAULT}"))?;
        let out = s.hostctl(&["restore", "latest", "--yes"]);
        s.root_sh(&format!("rm -f {FAULT}"))?;
        let out = out?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1),
            "exit {:?}: {stderr}",
            out.status
        );
        ensure!(
            stderr.contains(&format!("swapping the restored {FILES} in failed"))
                && stderr.contains(
                    "what was already swapped was swapped back: the live data is as it was"
                ),
            "{stderr}"
        );
        every_service_running(s, "after the failed swap")?;
        every_kind_as_it_was(s, TRIAL, "after the failed swap")?;
        let left = leftovers(s)?;
        ensure!(left.is_empty(), "left behind: {left}");
        Ok(())
    });
    let cleaned = clean_up(s, TRIAL);
    result?;
    cleaned
}

const MOUNTED: &str = "/srv/restore-mounted";
const ROOMY: &str = "/srv/restore-roomy";

/// Refused with the reason in the dry run and the restore alike, the API
/// never stopped.
fn refused_before_anything_stops(s: &Sandbox, needle: &str) -> Result<()> {
    let api = s.unit_property("api@1.service", "InvocationID")?;
    for args in [
        &["restore", "latest", "--dry-run"][..],
        &["restore", "latest", "--yes"],
    ] {
        let out = s.hostctl(args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{args:?} went ahead");
        ensure!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    ensure!(
        s.unit_property("api@1.service", "InvocationID")? == api,
        "the API was restarted"
    );
    Ok(())
}

pub fn a_mount_point_or_a_file_system_without_room_is_refused_before_anything_stops(
    s: &Sandbox,
) -> Result<()> {
    let setup = format!(
        "mkdir -p {MOUNTED} {ROOMY} && mount -t tmpfs -o size=2m tmpfs {MOUNTED} && \
         echo kept > {MOUNTED}/a && mount -t tmpfs -o size=6m tmpfs {ROOMY} && mkdir {ROOMY}/data && \
         dd if=/dev/urandom of={ROOMY}/data/blob bs=1M count=4 2>/dev/null"
    );
    let cleanup = format!("umount {MOUNTED} {ROOMY}; rmdir {MOUNTED} {ROOMY}");
    s.root_sh(&setup)?;
    let mounted = s.with_backups("mounted", &[MOUNTED], "redis = false\n", |_| {
        let run = backup_now(s)?;
        ensure!(run.ok == Some(true), "backup: {:?}", run.error);
        refused_before_anything_stops(s, &format!("{MOUNTED} is a mount point"))?;
        let a = s.root_sh(&format!("cat {MOUNTED}/a"))?;
        ensure!(a.trim() == "kept", "{MOUNTED}/a: {a}");
        Ok(())
    });
    let data = format!("{ROOMY}/data");
    let roomy = s.with_backups("roomy", &[&data], "redis = false\n", |_| {
        let run = backup_now(s)?;
        ensure!(run.ok == Some(true), "backup: {:?}", run.error);
        // 4 MiB back beside 4 MiB live on a 6 MiB file system.
        refused_before_anything_stops(
            s,
            &format!("not enough room on the file system at {ROOMY} for {data}: the restored copies need 4194304 bytes"),
        )?;
        let left = s.root_sh(&format!("ls {ROOMY}"))?;
        ensure!(left.trim() == "data", "{ROOMY} holds {left}");
        Ok(())
    });
    let cleaned = s.root_sh(&cleanup).context("unmounting the trial's tmpfs");
    mounted?;
    roomy?;
    cleaned.map(drop)
}
