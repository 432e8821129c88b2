//! `hostctl upgrade-hostd`: a new hostd build pushed to a running host.
//! hostd restarts on it; the services it manages keep running (same main
//! processes); a build that does not run there is refused and changes
//! nothing.

use std::time::Duration;

use anyhow::{Result, ensure};
use hostctl_tests::deploy::digest;
use hostctl_tests::{Sandbox, bin_dir, http_get, poll};

const SERVICES: [&str; 3] = [
    "api@1.service",
    "postgresql@15-main.service",
    "redis-server.service",
];

fn main_pids(s: &Sandbox) -> Result<Vec<String>> {
    SERVICES
        .iter()
        .map(|u| s.unit_property(u, "MainPID"))
        .collect()
}

fn upgrade(s: &Sandbox, binary: &std::path::Path) -> Result<(bool, serde_json::Value)> {
    let path = binary.to_string_lossy();
    let out = s.hostctl(&["upgrade-hostd", "--binary", &path, "--json"])?;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.success(), summary[0].clone()))
}

fn build_reported(s: &Sandbox) -> Result<Option<String>> {
    let (_, hosts) = s.status_json()?;
    Ok(hosts[0]["status"]["hostd_build"]
        .as_str()
        .map(str::to_owned))
}

/// A member of the control socket's group deploys, but cannot put a new
/// hostd into root's hands: reached without sudo, the upgrade is refused
/// naming the caller the kernel saw; the ledger records that caller too.
pub fn a_group_member_cannot_upgrade_hostd_and_is_recorded_by_the_kernel(
    s: &Sandbox,
) -> Result<()> {
    let work = tempfile::tempdir()?;
    let config = std::fs::read_to_string(&s.hostctl_toml)?
        .replace("[ssh]\n", "[ssh]\nroot_hostd_path = \"hostd\"\n");
    let as_member = work.path().join("hostctl.toml");
    std::fs::write(&as_member, config)?;
    let before = poll("hostd to report its build", Duration::from_secs(30), || {
        build_reported(s)
    })?;
    // Another build than the one running, or hostctl has nothing to send.
    let mut bytes = std::fs::read(bin_dir()?.join("hostd"))?;
    bytes.extend_from_slice(b"\nhostd group member trial\n");
    let binary = work.path().join("hostd");
    std::fs::write(&binary, &bytes)?;
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let path = binary.to_string_lossy();
    let out = s.hostctl_with_config(&as_member, &["upgrade-hostd", "--binary", &path])?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(!out.status.success(), "a group member upgraded hostd");
    ensure!(
        said.contains("needs root on the host") && said.contains("admin (uid"),
        "refusal: {said}"
    );
    ensure!(
        build_reported(s)?.as_deref() == Some(before.as_str()),
        "the build changed"
    );

    let p = hostctl_tests::deploy::Project::new(&[s], "")?;
    p.stage("caller1", false)?;
    let (code, summary, stderr) = p.deploy(s, "caller1", &[])?;
    ensure!(code == 0, "deploy: {summary:?} {stderr}");
    let releases = p.hostctl(s, &["releases", "--json"])?;
    let text = String::from_utf8_lossy(&releases.stdout);
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let recorded = json[0]["answer"]["ledger"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|e| e["caller"].as_str())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        recorded.starts_with("admin (uid "),
        "the ledger does not record the caller: {text}"
    );
    Ok(())
}

const TRIAL_SOCKET: &str = "/run/systemd/system/upgrade-trial-front.socket";

pub fn upgrade_hostd_restarts_on_the_new_build_and_keeps_services_running(
    s: &Sandbox,
) -> Result<()> {
    let work = tempfile::tempdir()?;
    let original = bin_dir()?.join("hostd");
    // Another build of the same program: trailing bytes change its digest,
    // not what it does.
    let mut bytes = std::fs::read(&original)?;
    bytes.extend_from_slice(b"\nhostd upgrade trial\n");
    let build = digest(&bytes);
    let new = work.path().join("hostd");
    std::fs::write(&new, &bytes)?;
    std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    // The front's binary goes with it when it is beside it.
    std::fs::copy(
        bin_dir()?.join("hostd-front"),
        work.path().join("hostd-front"),
    )?;

    let replaced = poll("hostd to report its build", Duration::from_secs(30), || {
        build_reported(s)
    })?;
    let services = main_pids(s)?;
    let hostd = s.unit_property("hostd.service", "MainPID")?;
    // The front runs from hostd's binary too: it must move to the new one.
    // A socket of the trial's own gives it something to serve (hostd
    // manages only hostd-front-*.socket).
    s.root_sh(&format!(
        "printf '[Socket]\\nListenStream=127.0.0.1:39990\\nFileDescriptorName=trial\\nService=hostd-front.service\\n' \
         > {TRIAL_SOCKET} && systemctl daemon-reload && systemctl start upgrade-trial-front.socket hostd-front"
    ))?;
    let front = s.unit_property("hostd-front.service", "MainPID")?;
    let (ok, summary) = upgrade(s, &new)?;
    let moved = poll("the front to restart", Duration::from_secs(30), || {
        let now = s.unit_property("hostd-front.service", "MainPID")?;
        Ok((now != front && now != "0").then_some(now))
    })
    .and_then(|pid| s.root_sh(&format!("readlink /proc/{pid}/exe")));
    s.root_sh(&format!(
        "systemctl stop hostd-front upgrade-trial-front.socket; rm -f {TRIAL_SOCKET}; systemctl daemon-reload"
    ))?;
    ensure!(ok && summary["outcome"] == "upgraded", "{summary}");
    let exe = moved?;
    ensure!(
        exe.trim() == "/usr/local/lib/hostd/bin/hostd-front",
        "the front runs {exe:?}, not the new build"
    );
    ensure!(
        summary["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("hostd ")),
        "{summary}"
    );
    ensure!(
        build_reported(s)?.as_deref() == Some(build.as_str()),
        "the host does not run the new build"
    );
    ensure!(
        s.unit_property("hostd.service", "MainPID")? != hostd,
        "hostd did not restart"
    );
    ensure!(
        main_pids(s)? == services,
        "a managed service restarted: {services:?} -> {:?}",
        main_pids(s)?
    );
    ensure!(
        http_get(s.health_addr()?, "/health")?.status == 200,
        "unhealthy after the upgrade"
    );

    let (ok, summary) = upgrade(s, &new)?;
    ensure!(
        ok && summary["outcome"] == "unchanged",
        "the same build again: {summary}"
    );

    // Not a hostd that runs here: refused, and nothing changes.
    let broken = work.path().join("broken");
    std::fs::write(&broken, "#!/bin/sh\nexit 3\n")?;
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let hostd = s.unit_property("hostd.service", "MainPID")?;
    let (ok, summary) = upgrade(s, &broken)?;
    ensure!(!ok && summary["outcome"] == "failed", "{summary}");
    ensure!(
        summary["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not run on this host")),
        "{summary}"
    );
    ensure!(
        s.unit_property("hostd.service", "MainPID")? == hostd,
        "hostd restarted for a refused build"
    );
    ensure!(build_reported(s)?.as_deref() == Some(build.as_str()));
    // The build the upgrade replaced is kept for a manual return; the
    // refused one left nothing.
    let dir = s.root_sh("ls -A /usr/local/lib/hostd/bin")?;
    let mut names: Vec<&str> = dir.split_whitespace().collect();
    names.sort_unstable();
    let kept = [
        "hostd",
        "hostd-front",
        "hostd-front.previous",
        "hostd.previous",
    ];
    ensure!(names == kept, "{dir}");
    let previous = s.root_sh("sha256sum /usr/local/lib/hostd/bin/hostd.previous")?;
    ensure!(
        previous.starts_with(&replaced),
        "hostd.previous is not the replaced build: {previous}"
    );

    // The suite's own build back, for the trials after this one.
    let (ok, summary) = upgrade(s, &original)?;
    ensure!(ok && summary["outcome"] == "upgraded", "{summary}");
    ensure!(main_pids(s)? == services, "a managed service restarted");
    Ok(())
}
