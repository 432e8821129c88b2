//! Issue 3, the hostctl half: `logs`, `start`/`stop`/`restart` and `scale`
//! against the sandbox host's hostd.

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, poll};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn explain(out: &Output) -> String {
    format!(
        "exit {:?}; stdout: {}; stderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// `hostctl ARGS --json` that must succeed: the one host's object.
fn act_json(s: &Sandbox, args: &[&str]) -> Result<serde_json::Value> {
    let mut args = args.to_vec();
    args.push("--json");
    let out = s.hostctl(&args)?;
    ensure!(out.status.success(), "hostctl {args:?}: {}", explain(&out));
    let hosts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("hostctl {args:?} printed no JSON array: {}", explain(&out)))?;
    ensure!(hosts.len() == 1, "one host expected: {hosts:?}");
    let host = hosts.into_iter().next().context("no host")?;
    ensure!(host["outcome"] == "done", "{host}");
    Ok(host)
}

/// The states of the units of the first result, by unit name.
fn result_units(host: &serde_json::Value) -> Vec<(String, String)> {
    host["results"][0]["units"]
        .as_array()
        .map(|units| {
            units
                .iter()
                .map(|u| {
                    (
                        u["unit"].as_str().unwrap_or_default().to_owned(),
                        u["active_state"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Active api instances, sorted (`api@1.service`...).
fn active_api_instances(s: &Sandbox) -> Result<Vec<String>> {
    let out =
        s.root_sh("systemctl list-units --plain --no-legend --state=active 'api@*.service'")?;
    let mut units: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    units.sort_unstable();
    Ok(units)
}

pub fn logs_prints_recent_journal_lines_of_redis(s: &Sandbox) -> Result<()> {
    // A restart puts fresh lines in the unit's journal whatever came before.
    s.root_sh("systemctl restart redis-server.service")?;
    let out = s.hostctl(&["logs", "redis", "-n", "5"])?;
    ensure!(out.status.success(), "{}", explain(&out));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    ensure!(
        !lines.is_empty() && lines.len() <= 5,
        "expected 1 to 5 lines: {stdout}"
    );
    // short-iso: `2026-01-01T12:00:00+0000 host systemd[1]: ...`; one host,
    // so no prefix.
    ensure!(
        lines.iter().all(|l| l.starts_with("20") && l.contains('T')),
        "not short-iso journal lines: {stdout}"
    );
    ensure!(
        lines
            .iter()
            .any(|l| l.contains("redis-server.service") || l.contains("redis")),
        "nothing about redis: {stdout}"
    );
    ensure!(
        !stdout.contains("postgresql@"),
        "other units leaked in: {stdout}"
    );
    // The human-friendly --since survives the remote shell.
    let out = s.hostctl(&["logs", "redis", "--since", "1 hour ago", "-n", "1"])?;
    ensure!(out.status.success(), "{}", explain(&out));
    ensure!(text(&out.stdout).lines().count() == 1, "{}", explain(&out));
    Ok(())
}

pub fn logs_of_an_unknown_service_lists_the_known_ones(s: &Sandbox) -> Result<()> {
    let out = s.hostctl(&["logs", "nosuch"])?;
    ensure!(out.status.code() == Some(2), "{}", explain(&out));
    let stderr = text(&out.stderr);
    ensure!(
        stderr.contains("unknown service \"nosuch\"")
            && stderr.contains("postgresql")
            && stderr.contains("redis"),
        "{stderr}"
    );
    ensure!(out.stdout.is_empty(), "{}", explain(&out));
    Ok(())
}

pub fn restart_redis_reports_it_active_with_a_new_invocation(s: &Sandbox) -> Result<()> {
    let before = s.unit_property("redis-server.service", "InvocationID")?;
    let host = act_json(s, &["restart", "redis"])?;
    let units = result_units(&host);
    ensure!(
        units.contains(&("redis-server.service".into(), "active".into())),
        "{host}"
    );
    let after = s.unit_property("redis-server.service", "InvocationID")?;
    ensure!(
        !after.is_empty() && after != before,
        "InvocationID unchanged ({before}): redis was not restarted"
    );
    ensure!(s.unit_property("redis-server.service", "ActiveState")? == "active");
    Ok(())
}

pub fn stop_then_start_redis_moves_health_to_503_and_back(s: &Sandbox) -> Result<()> {
    let addr = s.health_addr()?;
    let result = (|| {
        let host = act_json(s, &["stop", "redis"])?;
        ensure!(
            result_units(&host)
                .iter()
                .any(|(u, st)| u == "redis-server.service" && st != "active"),
            "{host}"
        );
        ensure!(s.unit_property("redis-server.service", "ActiveState")? == "inactive");
        // hostd keeps a stopped service stopped: no restart behind our back.
        std::thread::sleep(Duration::from_secs(3));
        ensure!(s.unit_property("redis-server.service", "ActiveState")? == "inactive");
        poll("/health to turn 503", Duration::from_secs(30), || {
            Ok((http_get(addr, "/health")?.status == 503).then_some(()))
        })?;
        let host = act_json(s, &["start", "redis"])?;
        ensure!(
            result_units(&host).contains(&("redis-server.service".into(), "active".into())),
            "{host}"
        );
        Ok(())
    })();
    if result.is_err() {
        let _ = s.hostctl(&["start", "redis"]);
        let _ = s.root_sh("systemctl start redis-server.service");
    }
    result?;
    poll("/health back to 200", Duration::from_secs(30), || {
        Ok((http_get(addr, "/health")?.status == 200).then_some(()))
    })?;
    Ok(())
}

pub fn scale_api_to_3_and_back_to_1(s: &Sandbox) -> Result<()> {
    let result = (|| {
        let host = act_json(s, &["scale", "api=3"])?;
        let running: Vec<String> = result_units(&host)
            .into_iter()
            .filter(|(_, st)| st == "active")
            .map(|(u, _)| u)
            .collect();
        for unit in ["api@1.service", "api@2.service", "api@3.service"] {
            ensure!(
                running.iter().any(|u| u == unit),
                "{unit} not active: {host}"
            );
            ensure!(
                s.unit_property(unit, "ActiveState")? == "active",
                "{unit} is not active on the host"
            );
        }
        ensure!(
            active_api_instances(s)? == ["api@1.service", "api@2.service", "api@3.service"],
            "{:?}",
            active_api_instances(s)?
        );
        act_json(s, &["scale", "api=1"])?;
        ensure!(
            active_api_instances(s)? == ["api@1.service"],
            "after api=1: {:?}",
            active_api_instances(s)?
        );
        for unit in ["api@2.service", "api@3.service"] {
            let state = s.unit_property(unit, "ActiveState")?;
            ensure!(state == "inactive", "{unit} is {state} after api=1");
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = s.hostctl(&["scale", "api=1"]);
    }
    result
}

pub fn scale_refusals_exit_2_and_change_nothing(s: &Sandbox) -> Result<()> {
    let before = active_api_instances(s)?;
    let redis = s.unit_property("redis-server.service", "InvocationID")?;

    let out = s.hostctl(&["scale", "nosuch=2"])?;
    ensure!(out.status.code() == Some(2), "{}", explain(&out));
    let stderr = text(&out.stderr);
    ensure!(
        stderr.contains("nosuch") && stderr.contains("api") && stderr.contains("redis"),
        "the error does not list the known services: {stderr}"
    );

    let out = s.hostctl(&["scale", "api=999"])?;
    ensure!(out.status.code() == Some(2), "{}", explain(&out));
    let stderr = text(&out.stderr);
    ensure!(
        stderr.contains("999") && stderr.contains('8'),
        "the error does not give the valid range: {stderr}"
    );

    // api=0 is refused by hostctl itself: nothing reaches the host.
    let out = s.hostctl(&["scale", "api=0"])?;
    ensure!(out.status.code() == Some(2), "{}", explain(&out));
    ensure!(
        text(&out.stderr).contains("hostctl stop api"),
        "{}",
        explain(&out)
    );
    for bad in ["api", "api=x", "api=-1"] {
        let out = s.hostctl(&["scale", bad])?;
        ensure!(
            out.status.code() == Some(2),
            "scale {bad}: {}",
            explain(&out)
        );
    }

    ensure!(
        active_api_instances(s)? == before,
        "instances changed: {before:?} -> {:?}",
        active_api_instances(s)?
    );
    ensure!(s.unit_property("redis-server.service", "InvocationID")? == redis);
    Ok(())
}
