//! What app code may reach: the API's instances, jobs, deploy hooks and
//! tasks run on the instance, but not with the instance's identity. The
//! instance metadata service (here the IMDSv2 stand-in on
//! 169.254.169.254) is denied to each of them by their units; hostd keeps
//! its own access.

use anyhow::{Result, ensure};
use hostctl_tests::Sandbox;
use hostctl_tests::deploy::Project;

/// Exits 0 printing `reached` when a TCP connection to the metadata
/// address opens within 3 s, 7 printing `blocked` otherwise (a denied
/// address drops the packets: the connection would hang, not fail).
const PROBE: &str = "#!/bin/bash\n\
    if timeout 3 bash -c '(exec 3<>/dev/tcp/169.254.169.254/80)' 2>/dev/null; then echo reached; exit 0; fi\n\
    echo blocked; exit 7\n";
const PROBE_PATH: &str = "/usr/local/bin/imds-probe";

const JOB: &str = "[jobs.imds]\ncommand = \"/usr/local/bin/imds-probe\"\nschedule = \"2099-01-01\"";
const TASK: &str = "[services.backend.tasks.imds]\ncommand = \"/usr/local/bin/imds-probe\"";

/// The probe run from inside `unit`'s control group, where its IP
/// address filters apply.
fn probe_in(s: &Sandbox, unit: &str) -> Result<String> {
    let cgroup = s.unit_property(unit, "ControlGroup")?;
    ensure!(!cgroup.is_empty(), "{unit} has no control group");
    // The unified hierarchy: /sys/fs/cgroup, or beside v1 in a hybrid one.
    s.root_sh(&format!(
        "base=/sys/fs/cgroup; [ -d $base/unified ] && base=$base/unified; \
         bash -c \"echo \\$\\$ > $base{cgroup}/cgroup.procs && exec {PROBE_PATH}\" || true"
    ))
}

pub fn app_code_cannot_reach_the_instance_metadata_service(s: &Sandbox) -> Result<()> {
    s.root_sh(&format!(
        "cat > {PROBE_PATH} <<'EOF'\n{PROBE}EOF\nchmod 755 {PROBE_PATH}"
    ))?;
    let outside = s.root_sh(&format!("{PROBE_PATH} || true"))?;
    ensure!(
        outside.trim() == "reached",
        "the stand-in does not answer the host itself: {outside}"
    );
    let hostd = probe_in(s, "hostd.service")?;
    ensure!(hostd.trim() == "reached", "hostd lost its access: {hostd}");
    let api = probe_in(s, "api@1.service")?;
    ensure!(api.trim() == "blocked", "api@1 reached the metadata: {api}");

    s.with_hostd_config("true", JOB, "true", || {
        let out = s.hostctl(&["jobs", "run", "imds"])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.code() == Some(7) && stdout.contains("blocked"),
            "a job reached the metadata: {:?} {stdout}",
            out.status.code()
        );
        Ok(())
    })?;

    let p = Project::new(&[s], TASK)?;
    let out = p.hostctl(s, &["run", "backend", "imds"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(7) && stdout.contains("blocked"),
        "a task reached the metadata: {:?} {stdout}",
        out.status.code()
    );
    s.root_sh(&format!("rm -f {PROBE_PATH}"))?;
    Ok(())
}
