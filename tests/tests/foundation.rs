//! Issue 2: hostd under systemd, /health, the control socket, `hostctl status`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, http_get, poll};
use hostd_api::HealthStatus;

const CONFIG: &str = "/etc/hostd/hostd.toml";

pub fn hostd_is_active_ready_and_pings_the_watchdog(s: &Sandbox) -> Result<()> {
    ensure!(s.unit_property("hostd.service", "Type")? == "notify");
    ensure!(s.unit_property("hostd.service", "ActiveState")? == "active");
    // STATUS= is sent together with READY=1, so seeing it proves hostd, not
    // a timeout, moved the unit to active.
    ensure!(
        s.unit_property("hostd.service", "StatusText")? == "serving",
        "hostd did not report READY with its status text"
    );
    let first = s.unit_property("hostd.service", "WatchdogTimestampMonotonic")?;
    ensure!(first != "0", "systemd has not seen a watchdog ping yet");
    // WatchdogSec=30s: hostd pings every 15 s; a fresh timestamp proves it
    // keeps pinging rather than having sent one at start.
    poll("a second watchdog ping", Duration::from_secs(25), || {
        let now = s.unit_property("hostd.service", "WatchdogTimestampMonotonic")?;
        Ok((now != first).then_some(()))
    })?;
    Ok(())
}

pub fn status_json_reports_units_and_health(s: &Sandbox) -> Result<()> {
    let (code, hosts) = s.status_json()?;
    ensure!(
        code == 0,
        "status exited {code} on a healthy host: {hosts:?}"
    );
    ensure!(hosts.len() == 1, "one host expected: {hosts:?}");
    let host = &hosts[0];
    ensure!(host["host"] == s.name.as_str(), "{host}");
    ensure!(host["reachable"] == true, "{host}");
    let status: hostd_api::HostStatus = serde_json::from_value(host["status"].clone())?;
    ensure!(
        status.hostd_version == env!("CARGO_PKG_VERSION"),
        "{status:?}"
    );
    ensure!(status.health.status == HealthStatus::Healthy, "{status:?}");
    let mut services: Vec<_> = status.units.iter().map(|u| u.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    ensure!(services == ["api", "postgresql", "redis"], "{services:?}");
    ensure!(
        status
            .units
            .iter()
            .all(|u| u.active_state == hostd_api::ActiveState::Active),
        "{:?}",
        status.units
    );
    // The human view says the same thing.
    let out = s.hostctl(&["status"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("redis-server.service"),
        "{text}"
    );
    Ok(())
}

pub fn health_turns_503_naming_a_stopped_unit_and_recovers(s: &Sandbox) -> Result<()> {
    let addr = s.health_addr()?;
    let first = http_get(addr, "/health")?;
    ensure!(
        first.status == 200 && first.body.contains("\"status\":\"healthy\""),
        "{}",
        first.body
    );

    s.root_sh("systemctl stop redis-server.service")?;
    let result = (|| {
        // Stopping passes through `deactivating`: wait for the end state.
        let down = poll(
            "/health 503 with redis inactive",
            Duration::from_secs(30),
            || {
                let r = http_get(addr, "/health")?;
                let inactive = r.body.contains("redis-server.service is inactive");
                Ok((r.status == 503 && inactive).then_some(r))
            },
        )?;
        ensure!(
            down.body.contains("unit:redis"),
            "503 body does not name redis: {}",
            down.body
        );
        ensure!(
            down.body.contains("redis-server.service is inactive"),
            "{}",
            down.body
        );
        ensure!(
            !down
                .body
                .contains("unit:postgresql\",\"status\":\"unhealthy"),
            "{}",
            down.body
        );

        let (code, hosts) = s.status_json()?;
        ensure!(
            code == 1,
            "status must exit 1 for an unhealthy host, got {code}"
        );
        let status: hostd_api::HostStatus = serde_json::from_value(hosts[0]["status"].clone())?;
        let redis = status
            .units
            .iter()
            .find(|u| u.service == "redis")
            .context("redis missing from status")?;
        ensure!(
            redis.active_state == hostd_api::ActiveState::Inactive,
            "{redis:?}"
        );
        Ok(())
    })();
    s.root_sh("systemctl start redis-server.service")?;
    result?;
    poll("/health back to 200", Duration::from_secs(30), || {
        Ok((http_get(addr, "/health")?.status == 200).then_some(()))
    })?;
    Ok(())
}

pub fn unit_changes_reach_health_through_signals_not_polling(s: &Sandbox) -> Result<()> {
    // With checks an hour apart, only systemd's PropertiesChanged signals
    // can bring the stop of redis to /health within the test's deadline.
    s.root_sh(&format!(
        "cp -p {CONFIG} {CONFIG}.good && sed -i 's/^check_interval = .*/check_interval = \"1h\"/' {CONFIG} && \
         grep -q '^check_interval = \"1h\"' {CONFIG} && systemctl restart hostd.service"
    ))?;
    let addr = s.health_addr()?;
    let result = (|| {
        poll(
            "/health 200 after the restart",
            Duration::from_secs(30),
            || Ok((http_get(addr, "/health")?.status == 200).then_some(())),
        )?;
        s.wait_reconciled()?;
        s.root_sh("systemctl stop redis-server.service")?;
        let down = poll(
            "/health to turn 503 after a signal",
            Duration::from_secs(20),
            || {
                let r = http_get(addr, "/health")?;
                Ok((r.status == 503).then_some(r))
            },
        )?;
        ensure!(down.body.contains("unit:redis"), "{}", down.body);
        s.root_sh("systemctl start redis-server.service")?;
        poll(
            "/health back to 200 after a signal",
            Duration::from_secs(20),
            || Ok((http_get(addr, "/health")?.status == 200).then_some(())),
        )
    })();
    s.root_sh(&format!(
        "systemctl start redis-server.service; mv {CONFIG}.good {CONFIG} && systemctl restart hostd.service"
    ))?;
    result
}

pub fn broken_config_fails_hostd_naming_file_line_and_key(s: &Sandbox) -> Result<()> {
    s.root_sh(&format!(
        "cp -p {CONFIG} {CONFIG}.good && printf '\\n[health]\\nlisen = \"0.0.0.0:1\"\\n' > /tmp/bad.toml && \
         sed '/^\\[health\\]/,/^$/d' {CONFIG}.good >> /tmp/bad.toml && install -m 0640 -g hostd /tmp/bad.toml {CONFIG}"
    ))?;
    let result = (|| {
        // The restart itself must fail: systemd waits for READY and gets exit 78.
        let restart = s.root_sh_output("systemctl restart hostd.service")?;
        ensure!(
            !restart.status.success(),
            "restart with a broken config succeeded"
        );
        ensure!(s.unit_property("hostd.service", "ActiveState")? == "failed");
        let status = s.root_sh_output(
            "SYSTEMD_COLORS=0 systemctl status --no-pager -l -n 20 hostd.service",
        )?;
        let text = String::from_utf8_lossy(&status.stdout);
        ensure!(
            text.contains("status=78"),
            "exit status 78 not shown:\n{text}"
        );
        ensure!(
            text.contains("/etc/hostd/hostd.toml:3: key `health.lisen`"),
            "systemctl status does not show file, line and key:\n{text}"
        );
        Ok(())
    })();
    s.root_sh(&format!(
        "mv {CONFIG}.good {CONFIG} && systemctl reset-failed hostd.service && systemctl start hostd.service"
    ))?;
    result?;
    ensure!(s.unit_property("hostd.service", "ActiveState")? == "active");
    Ok(())
}

/// A service whose unit nobody installed would keep the host unhealthy for
/// good: `check-config` asks systemd and refuses it, naming the key.
pub fn check_config_refuses_a_service_whose_unit_is_not_installed(s: &Sandbox) -> Result<()> {
    let good = s.root_sh_output(&format!("hostd check-config --config {CONFIG}"))?;
    ensure!(
        good.status.success(),
        "the sandbox's own config fails check-config: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let ghost = s.root_sh_output(&format!(
        "cp {CONFIG} /tmp/ghost.toml && printf '\n[services.ghost]\nunit = \"nonexistent.service\"\n' >> /tmp/ghost.toml && \
         hostd check-config --config /tmp/ghost.toml; rc=$?; rm -f /tmp/ghost.toml; exit $rc"
    ))?;
    let stderr = String::from_utf8_lossy(&ghost.stderr);
    ensure!(
        ghost.status.code() == Some(78),
        "exit {:?}: {stderr}",
        ghost.status
    );
    ensure!(
        stderr.contains(
            "/tmp/ghost.toml: key `services.ghost.unit`: systemd has no unit nonexistent.service"
        ),
        "{stderr}"
    );
    ensure!(
        !stderr.contains("services.api") && !stderr.contains("services.redis"),
        "installed units named too: {stderr}"
    );
    Ok(())
}

pub fn unreachable_host_fails_status_naming_it(s: &Sandbox) -> Result<()> {
    let original = std::fs::read_to_string(&s.hostctl_toml)?;
    let own_hosts = format!("hosts = [\"{}\"]", s.name);
    ensure!(
        original.contains(&own_hosts),
        "unexpected sandbox hostctl.toml:\n{original}"
    );
    // Port 2 on the sandbox's own address: nothing listens, so the
    // connection is refused at once, and no traffic leaves our namespaces.
    let with_ghost = original.replace(&own_hosts, &format!("hosts = [\"{}\", \"ghost\"]", s.name))
        + &format!("\n[hosts.ghost]\naddress = \"{}\"\nport = 2\n", s.address);
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hostctl.toml");
    std::fs::write(&config, with_ghost)?;

    let (code, hosts) = s.status_json_with(&config)?;
    ensure!(
        code == 1,
        "status must exit 1 when a host is unreachable, got {code}"
    );
    let ghost = hosts
        .iter()
        .find(|h| h["host"] == "ghost")
        .context("ghost missing from status output")?;
    ensure!(ghost["reachable"] == false, "{ghost}");
    let why = ghost["error"].as_str().unwrap_or_default();
    ensure!(why.contains("refused"), "error does not say why: {ghost}");
    let own = hosts
        .iter()
        .find(|h| h["host"] == s.name.as_str())
        .context("reachable host missing")?;
    ensure!(
        own["reachable"] == true,
        "the healthy host must still be reported: {own}"
    );

    let out = s.hostctl_with_config(&config, &["status"])?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && text.contains("ghost"),
        "{text}"
    );
    Ok(())
}

pub fn control_socket_is_root_and_group_only(s: &Sandbox) -> Result<()> {
    let mode = s.root_sh("stat -c '%a %U %G' /run/hostd/control.sock")?;
    ensure!(mode.trim() == "660 root hostd", "control socket is {mode}");
    let denied = s.root_sh_output(
        "id outsider >/dev/null 2>&1 || useradd --no-create-home --shell /usr/sbin/nologin outsider; \
         setpriv --reuid=outsider --regid=outsider --clear-groups hostd dial-stdio </dev/null",
    )?;
    let err = String::from_utf8_lossy(&denied.stderr);
    ensure!(
        !denied.status.success(),
        "a user outside group hostd reached the control socket"
    );
    ensure!(err.contains("permission denied"), "unclear refusal: {err}");
    // Nothing listens for control on TCP: only the health port is open.
    let listening = s.root_sh("ss -Htlnp | grep hostd || true")?;
    let ports: Vec<_> = listening
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    ensure!(ports == ["0.0.0.0:7780"], "hostd listens on TCP {ports:?}");
    Ok(())
}

pub fn hostd_stops_gracefully_on_sigterm(s: &Sandbox) -> Result<()> {
    s.root_sh("systemctl stop hostd.service")?;
    let result = s.unit_property("hostd.service", "Result")?;
    let code = s.unit_property("hostd.service", "ExecMainStatus")?;
    // 1 is CLD_EXITED: hostd exited by itself. Death by the SIGTERM would be
    // 2 (CLD_KILLED), which systemd also counts as Result=success.
    let how = s.unit_property("hostd.service", "ExecMainCode")?;
    let socket_gone = s.root_sh("test -e /run/hostd/control.sock && echo present || echo gone")?;
    s.root_sh("systemctl start hostd.service")?;
    ensure!(
        result == "success" && code == "0" && how == "1",
        "stop was not clean: Result={result} ExecMainCode={how} ExecMainStatus={code}"
    );
    ensure!(
        socket_gone.trim() == "gone",
        "control socket left behind after stop"
    );
    let addr = s.health_addr()?;
    poll("/health after restart", Duration::from_secs(30), || {
        Ok((http_get(addr, "/health")?.status == 200).then_some(()))
    })?;
    Ok(())
}

/// hostd asks IMDSv2 (the sandbox's stand-in, tokens enforced) who it is;
/// `hostctl status` shows it.
pub fn hostd_learns_its_instance_identity_from_imdsv2(s: &Sandbox) -> Result<()> {
    let status = poll(
        "the instance identity in status",
        Duration::from_secs(60),
        || {
            let (_, hosts) = s.status_json()?;
            let status: hostd_api::HostStatus = serde_json::from_value(hosts[0]["status"].clone())?;
            Ok(status.instance.is_some().then_some(status))
        },
    )?;
    let Some(id) = status.instance else {
        anyhow::bail!("no identity")
    };
    ensure!(
        id.instance_id.starts_with("i-") && id.instance_id.len() == 19,
        "{id:?}"
    );
    ensure!(
        id.region == "us-east-1" && id.availability_zone.as_deref() == Some("us-east-1a"),
        "{id:?}"
    );
    ensure!(
        id.tags.get("Name") == Some(&s.name),
        "the Name tag is not read: {id:?}"
    );
    let out = s.hostctl(&["status"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text.contains(&format!("instance {}", id.instance_id)),
        "{text}"
    );
    Ok(())
}
