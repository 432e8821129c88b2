//! Issue 3: hostd supervises the API instances, PostgreSQL and Redis.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, http_request, poll};

fn api_addr(s: &Sandbox) -> Result<std::net::SocketAddr> {
    Ok(format!("{}:8080", s.address).parse()?)
}

fn active(s: &Sandbox, unit: &str) -> Result<bool> {
    Ok(s.unit_property(unit, "ActiveState")? == "active")
}

/// The events hostd reports in `hostctl status --json`.
fn events(s: &Sandbox) -> Result<Vec<serde_json::Value>> {
    let (_, hosts) = s.status_json()?;
    Ok(hosts
        .first()
        .and_then(|h| h["status"]["events"].as_array().cloned())
        .unwrap_or_default())
}

pub fn the_demo_api_serves_through_the_shared_socket(s: &Sandbox) -> Result<()> {
    let addr = api_addr(s)?;
    poll("api@1 active", Duration::from_secs(30), || {
        Ok(active(s, "api@1.service")?.then_some(()))
    })?;
    let created = http_request(addr, "POST", "/notes", "written through the sandbox")?;
    ensure!(
        created.status == 201,
        "POST /notes: {} {}",
        created.status,
        created.body
    );
    let listed = http_get(addr, "/notes")?;
    ensure!(
        listed.status == 200 && listed.body.contains("written through the sandbox"),
        "GET /notes: {} {}",
        listed.status,
        listed.body
    );
    // The instance's private health socket is what hostd probes.
    let probe =
        s.root_sh("curl -sf --unix-socket /run/api/1/health.sock http://localhost/health")?;
    ensure!(probe.contains("\"status\":\"ok\""), "{probe}");
    Ok(())
}

pub fn a_killed_instance_is_seen_by_signal_recorded_and_restarted(s: &Sandbox) -> Result<()> {
    let before = events(s)?.len();
    let pid = s.unit_property("api@1.service", "MainPID")?;
    ensure!(pid != "0", "api@1 is not running");
    s.root_sh(&format!("kill -KILL {pid}"))?;
    let event = poll("a failure event for api@1", Duration::from_secs(30), || {
        let all = events(s)?;
        Ok(all
            .into_iter()
            .skip(before)
            .find(|e| e["unit"] == "api@1.service"))
    })?;
    ensure!(event["result"] == "signal", "{event}");
    ensure!(event["exit_status"] == 9, "SIGKILL is signal 9: {event}");
    ensure!(
        event["action"]
            .as_str()
            .unwrap_or_default()
            .contains("restarting"),
        "{event}"
    );
    poll(
        "api@1 running again with a new process",
        Duration::from_secs(30),
        || {
            let now = s.unit_property("api@1.service", "MainPID")?;
            Ok((active(s, "api@1.service")? && now != "0" && now != pid).then_some(()))
        },
    )?;
    let (_, hosts) = s.status_json()?;
    let api = hosts[0]["status"]["services"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["name"] == "api").cloned())
        .context("api missing from services")?;
    ensure!(api["restarts"].as_u64().unwrap_or(0) >= 1, "{api}");
    Ok(())
}

pub fn scale_survives_a_hostd_restart_and_a_full_stop(s: &Sandbox) -> Result<()> {
    let scaled = s.hostctl(&["scale", "api=3"])?;
    ensure!(
        scaled.status.success(),
        "scale api=3 failed: {}{}",
        String::from_utf8_lossy(&scaled.stdout),
        String::from_utf8_lossy(&scaled.stderr)
    );
    for i in 1..=3 {
        ensure!(
            active(s, &format!("api@{i}.service"))?,
            "api@{i} not active after scale"
        );
    }
    let result = (|| {
        // hostd restarts: the count is restored from its persisted state.
        s.root_sh("systemctl restart hostd.service")?;
        ensure!(
            s.root_sh("cat /var/lib/hostd/desired.json")?
                .contains("\"instances\": 3")
        );
        // Like a reboot: everything stops, hostd starts and brings back three.
        s.root_sh("systemctl stop hostd.service 'api@*.service' api.socket")?;
        ensure!(!active(s, "api@3.service")?);
        s.root_sh("systemctl start hostd.service")?;
        poll(
            "three instances after a full stop",
            Duration::from_secs(60),
            || {
                Ok((1..=3)
                    .map(|i| active(s, &format!("api@{i}.service")))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .all(|a| a)
                    .then_some(()))
            },
        )?;
        Ok(())
    })();
    let down = s.hostctl(&["scale", "api=1"])?;
    result?;
    ensure!(
        down.status.success(),
        "scale api=1: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    ensure!(active(s, "api@1.service")?);
    for i in 2..=3 {
        let state = s.unit_property(&format!("api@{i}.service"), "ActiveState")?;
        ensure!(state == "inactive", "api@{i} is {state} after scale api=1");
    }
    Ok(())
}

pub fn every_unit_verifies_and_the_api_is_confined(s: &Sandbox) -> Result<()> {
    // Ours, and the distribution's units with our drop-ins (data on /data).
    // --man=no: the sandbox has no man pages, so Debian's
    // `Documentation=man:redis-server(1)` cannot be looked up; that says
    // nothing about the unit itself.
    let verify = s.root_sh_output(
        "cd /etc/systemd/system && systemd-analyze verify --man=no hostd.service hostd-data.service api@1.service \
         api.socket hostd-front.service redis-server.service postgresql@15-main.service 2>&1",
    )?;
    let text = String::from_utf8_lossy(&verify.stdout);
    ensure!(
        verify.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
    exposure_is_ok(s, "api@1.service")?;
    exposure_is_ok(s, "hostd-front.service")
}

/// `systemd-analyze security` rates `unit` "OK" or better (below 3.0).
pub(crate) fn exposure_is_ok(s: &Sandbox, unit: &str) -> Result<()> {
    let security = s.root_sh(&format!(
        "systemd-analyze security --no-pager {unit} | tail -1"
    ))?;
    eprintln!("{unit}: {}", security.trim());
    let exposure: f64 = security
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .with_context(|| format!("no exposure figure in: {security}"))?;
    ensure!(
        exposure < 3.0,
        "{unit} exposure {exposure} is not OK or better"
    );
    Ok(())
}

pub fn hostd_installs_a_changed_shipped_unit_and_reloads_systemd(s: &Sandbox) -> Result<()> {
    const SHIPPED: &str = "/usr/local/lib/hostd/units/api.socket";
    const MARK: &str = "# changed by the suite";
    ensure!(
        s.root_sh(&format!(
            "cmp {SHIPPED} /etc/systemd/system/api.socket && echo same"
        ))?
        .trim()
            == "same",
        "provisioning did not give hostd its own copy of the units"
    );
    s.root_sh(&format!(
        "cp -p {SHIPPED} /tmp/api.socket.good && echo '{MARK}' >> {SHIPPED}"
    ))?;
    let result = (|| {
        s.root_sh("systemctl restart hostd.service")?;
        let installed = s.root_sh("cat /etc/systemd/system/api.socket")?;
        ensure!(
            installed.contains(MARK),
            "hostd did not install the changed unit:\n{installed}"
        );
        // hostd reloaded systemd itself: the unit is not marked stale.
        ensure!(s.unit_property("api.socket", "NeedDaemonReload")? == "no");
        Ok(())
    })();
    s.root_sh(&format!(
        "mv /tmp/api.socket.good {SHIPPED} && systemctl restart hostd.service"
    ))?;
    result?;
    let back = s.root_sh("cat /etc/systemd/system/api.socket")?;
    ensure!(
        !back.contains(MARK),
        "the original unit was not reinstalled"
    );
    Ok(())
}
