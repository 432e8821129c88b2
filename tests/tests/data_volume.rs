//! PostgreSQL and Redis keep their data on /data (the EBS data volume on
//! EC2): provisioning moves the cluster there, drop-ins point Redis there and
//! make both wait for the mount.

use anyhow::{Result, ensure};
use hostctl_tests::Sandbox;

const PSQL: &str = "psql 'host=/run/postgresql user=postgres dbname=postgres' -Atc";

pub fn postgres_keeps_its_cluster_in_data(s: &Sandbox) -> Result<()> {
    let dir = s.root_sh(&format!("{PSQL} 'SHOW data_directory'"))?;
    ensure!(
        dir.trim() == "/data/postgresql/15/main",
        "data_directory is {dir:?}"
    );
    let owner = s.root_sh("stat -c '%U:%G %a' /data/postgresql/15/main")?;
    ensure!(owner.trim() == "postgres:postgres 700", "{owner}");
    // Moved, not copied: nothing left where the package created it.
    let old = s.root_sh("test -e /var/lib/postgresql/15/main && echo present || echo gone")?;
    ensure!(
        old.trim() == "gone",
        "/var/lib/postgresql/15/main is still there"
    );
    Ok(())
}

pub fn redis_keeps_its_dump_and_aof_in_data_redis(s: &Sandbox) -> Result<()> {
    let dir = s.root_sh("redis-cli CONFIG GET dir")?;
    let lines: Vec<&str> = dir.lines().collect();
    ensure!(lines == ["dir", "/data/redis"], "CONFIG GET dir: {dir:?}");
    let owner = s.root_sh("stat -c '%U:%G %a' /data/redis")?;
    ensure!(owner.trim() == "redis:redis 750", "{owner}");
    // SAVE writes the snapshot again (removing it first proves this SAVE
    // wrote it, and SAVE puts it back).
    s.root_sh("rm -f /data/redis/dump.rdb")?;
    let saved = s.root_sh("redis-cli SAVE")?;
    ensure!(saved.trim() == "OK", "redis-cli SAVE: {saved}");
    let dump = s.root_sh("stat -c '%U %s' /data/redis/dump.rdb")?;
    ensure!(dump.starts_with("redis "), "dump.rdb: {dump}");
    // Debian's hardening is kept: only /data/redis was added to what it may write.
    ensure!(s.unit_property("redis-server.service", "ProtectSystem")? == "strict");
    let rw = s.unit_property("redis-server.service", "ReadWritePaths")?;
    ensure!(
        rw.split_whitespace().any(|p| p == "/data/redis"),
        "ReadWritePaths: {rw}"
    );
    Ok(())
}

pub fn postgres_and_redis_wait_for_the_data_mount(s: &Sandbox) -> Result<()> {
    for (unit, dropin) in [
        (
            "redis-server.service",
            "/etc/systemd/system/redis-server.service.d/50-hostd.conf",
        ),
        (
            "postgresql@15-main.service",
            "/etc/systemd/system/postgresql@.service.d/50-hostd.conf",
        ),
    ] {
        let mounts = s.unit_property(unit, "RequiresMountsFor")?;
        ensure!(
            mounts.split_whitespace().any(|p| p == "/data"),
            "{unit}: RequiresMountsFor={mounts}"
        );
        let dropins = s.unit_property(unit, "DropInPaths")?;
        ensure!(
            dropins.split_whitespace().any(|p| p == dropin),
            "{unit}: DropInPaths={dropins}"
        );
        ensure!(s.unit_property(unit, "ActiveState")? == "active", "{unit}");
    }
    Ok(())
}
