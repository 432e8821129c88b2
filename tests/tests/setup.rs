//! Issue 20 (5): `hostctl setup` brings a bare host (as an EC2 base image
//! boots: nothing of hostd's, an operator with sudo) to the state of one
//! from the AMI through the same provisioning script, then applies the
//! repository's configuration; from there the repository drives it (a job
//! and an app added, the job removed, a bad file refused, a failing app
//! put back); setup run again changes nothing.

use std::time::Duration;

use anyhow::{Result, ensure};
use hostctl_tests::{Sandbox, bin_dir, http_get, poll};

use crate::host_config::{Repository, apply_scenario, pid, text};

/// What the repository declares for the host: the stores, and the
/// machine-wide thresholds a shared build machine needs (the suite's other
/// sandboxes get the same).
const DECLARED: &str = "[control]
group = \"hostd\"

[services.postgresql]
unit = \"postgresql@15-main.service\"

[services.redis]
unit = \"redis-server.service\"

[checks]
postgres = \"host=/run/postgresql user=postgres dbname=postgres\"
redis = \"redis://127.0.0.1:6379/\"

[checks.load]
degraded_per_cpu = 1000.0
unhealthy_per_cpu = 1000.0

[checks.disk]
degraded_percent = 98
unhealthy_percent = 99
";

pub fn setup_brings_a_bare_host_to_the_image_state_and_the_repository_drives_it(
    s: &Sandbox,
) -> Result<()> {
    let bare = Sandbox::up_bare(&format!("{}s", s.name))?;
    ensure!(
        bare.root_sh("test -e /usr/local/bin/hostd || echo absent")?
            .trim()
            == "absent",
        "the bare host has hostd"
    );
    let repo = Repository::of(&bare, DECLARED)?;
    let hostd = bin_dir()?.join("hostd");
    let hostd = hostd.to_string_lossy();
    let setup = repo.hostctl(&bare, &["setup", "--binary", &hostd])?;
    let shown = text(&setup);
    ensure!(setup.status.success(), "{shown}");
    ensure!(
        shown.contains("provision: done") && shown.contains("provisioned in"),
        "{shown}"
    );

    // As from the image: hardened sshd, hostd's directories; and healthy
    // on the repository's configuration, written under its header.
    let sshd = bare.root_sh("sshd -T")?;
    ensure!(
        sshd.lines().any(|l| l == "permitrootlogin no"),
        "sshd is not hardened"
    );
    ensure!(
        bare.root_sh("stat -c %U:%a /var/lib/hostd")?.trim() == "root:700",
        "/var/lib/hostd"
    );
    let file = bare.root_sh("head -1 /etc/hostd/hostd.toml")?;
    ensure!(
        file.contains("Written by `hostctl apply` from hostd/sandbox.toml"),
        "{file}"
    );
    let addr = bare.health_addr()?;
    poll(
        "the set-up host to report healthy",
        Duration::from_secs(60),
        || {
            let r = http_get(addr, "/health")?;
            Ok((r.status == 200 && r.body.contains("\"healthy\"")).then_some(()))
        },
    )?;
    let hostd_pid = pid(&bare, "hostd.service")?;

    // From here the repository drives it, as any host.
    bare.root_sh(
        "mkdir -p /srv/cfgweb/r1 && echo first > /srv/cfgweb/r1/index.html && ln -sfn r1 /srv/cfgweb/current",
    )?;
    apply_scenario(&bare, &repo, DECLARED, false)?;

    // Setup again: provisioning keeps what is there, the apply has nothing
    // to do, hostd is not restarted.
    repo.declare(DECLARED)?;
    let apply = repo.hostctl(&bare, &["apply", "--yes"])?;
    ensure!(apply.status.success(), "{}", text(&apply));
    let again = repo.hostctl(&bare, &["setup", "--binary", &hostd])?;
    let shown = text(&again);
    ensure!(again.status.success(), "{shown}");
    ensure!(
        shown.contains("keeping existing /etc/hostd/hostd.toml")
            && shown.contains("nothing to apply"),
        "{shown}"
    );
    ensure!(
        pid(&bare, "hostd.service")? == hostd_pid,
        "setup again restarted hostd"
    );
    Ok(())
}
