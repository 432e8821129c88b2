//! The AMI's provisioning run for real: Packer's `null` source, with the
//! same template and provisioners as the `amazon-ebs` build, against a
//! sandbox booted from a bare root filesystem (what an EC2 base image is
//! before provisioning). Then the host starts what a boot of the image
//! starts, and hostd must report healthy.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostctl_tests::{Sandbox, bin_dir, http_get, poll};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Packer with no calls home (checkpoint) and its state in `home`.
fn packer(home: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("packer")
        .args(args)
        .current_dir(repo())
        .env("CHECKPOINT_DISABLE", "1")
        .env("PACKER_NO_COLOR", "1")
        .env("HOME", home)
        .env("PACKER_CONFIG_DIR", home)
        .env("PACKER_CACHE_DIR", home.join("cache"))
        .output()
        .context("run packer (Debian's package `packer`; tests/install-prereqs.sh installs it)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "packer {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    Ok(text)
}

pub fn packer_provisions_a_bare_host_that_boots_healthy(s: &Sandbox) -> Result<()> {
    let work = tempfile::tempdir()?;
    let staging = work.path().join("staging");
    let bins = bin_dir()?;
    let staged = Command::new(repo().join("packer/stage.sh"))
        .arg(&staging)
        .arg(bins.join("hostd"))
        .arg(bins.join("demo-backend"))
        .output()?;
    ensure!(
        staged.status.success(),
        "stage.sh: {}",
        String::from_utf8_lossy(&staged.stderr)
    );
    let template = "packer/hostd.pkr.hcl";
    let staging_var = format!("staging_dir={}", staging.display());
    packer(work.path(), &["fmt", "-check", "-diff", template])?;
    for base in ["debian-12", "al2023", "ubuntu-24.04"] {
        for arch in ["arm64", "x86_64"] {
            let vars = [format!("base_image={base}"), format!("arch={arch}")];
            packer(
                work.path(),
                &[
                    "validate",
                    "-var",
                    &staging_var,
                    "-var",
                    &vars[0],
                    "-var",
                    &vars[1],
                    template,
                ],
            )?;
        }
    }
    let wrong = packer(
        work.path(),
        &[
            "validate",
            "-var",
            &staging_var,
            "-var",
            "arch=armhf",
            template,
        ],
    );
    ensure!(
        wrong.is_err_and(|e| e.to_string().contains("arm64 or x86_64")),
        "an unknown architecture was accepted"
    );

    let bare = Sandbox::up_bare(&format!("{}b", s.name))?;
    ensure!(
        bare.root_sh("test -e /usr/local/bin/hostd || echo absent")?
            .trim()
            == "absent",
        "the bare host has hostd"
    );
    let host_var = format!("ssh_host={}", bare.address);
    let key_var = format!("ssh_private_key_file={}", bare.identity_file.display());
    let build = [
        "build",
        "-only=null.sandbox",
        "-var",
        &staging_var,
        "-var",
        &host_var,
        "-var",
        &key_var,
        template,
    ];
    let log = packer(work.path(), &build)?;
    ensure!(
        log.contains("provision: done"),
        "provision.sh did not finish:\n{log}"
    );

    // What a boot of the image starts: everything provisioning enabled.
    bare.root_sh("systemctl daemon-reload && systemctl start multi-user.target")?;
    let addr = bare.health_addr()?;
    poll(
        "hostd on the provisioned host to report healthy",
        Duration::from_secs(120),
        || {
            let r = http_get(addr, "/health")?;
            Ok((r.status == 200 && r.body.contains("\"healthy\"")).then_some(()))
        },
    )?;
    let sshd = bare.root_sh("sshd -T")?;
    for line in [
        "permitrootlogin no",
        "passwordauthentication no",
        "x11forwarding no",
    ] {
        ensure!(
            sshd.lines().any(|l| l == line),
            "sshd is not hardened: no `{line}`"
        );
    }
    ensure!(
        bare.root_sh("stat -c %U:%a /srv/api/current/bin/api /var/lib/hostd")?
            .split_whitespace()
            .eq(["root:755", "root:700"])
    );
    ensure!(
        bare.root_sh("test -f /data/postgresql/15/main/PG_VERSION && echo ok")?
            .trim()
            == "ok",
        "PostgreSQL's cluster is not on /data"
    );

    // The same provisioning again (a re-run, or a newer hostd baked onto the
    // same base) changes nothing that runs: hostd stays healthy.
    let log = packer(work.path(), &build)?;
    ensure!(
        log.contains("keeping existing /etc/hostd/hostd.toml"),
        "{log}"
    );
    poll(
        "hostd healthy after provisioning again",
        Duration::from_secs(60),
        || {
            let r = http_get(addr, "/health")?;
            Ok((r.status == 200).then_some(()))
        },
    )?;
    Ok(())
}
