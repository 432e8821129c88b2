//! The EC2 instance metadata stand-in (IMDSv2) of one sandbox: the host's
//! python3 runs tests/imds_standin.py inside the sandbox's network
//! namespace on 169.254.169.254:80 (an address on that namespace's `lo`),
//! so hostd inside takes the real EC2 path: region from instance metadata,
//! credentials from the instance profile.
//!
//! Python rather than Rust: hostctl already needs python3 for moto, the
//! script is stdlib only, and a Rust server would need a hidden hostctl
//! subcommand that enters another network namespace and outlives `up`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tracing::info;

use super::SandboxError;
use super::cmd::{Cmd, SANE_PATH};
use super::net;
use super::proc::Proc;
use super::state::Layout;

/// Embedded so an installed hostctl works anywhere.
const SCRIPT: &str = include_str!("../../../tests/imds_standin.py");
pub(crate) const ADDRESS: &str = "169.254.169.254";
/// The instance profile's role name the stand-in reports.
pub(crate) const ROLE: &str = "hostd-sandbox";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

fn script_path(layout: &Layout, name: &str) -> PathBuf {
    layout.dir(name).join("imds_standin.py")
}
fn ready_file(layout: &Layout, name: &str) -> PathBuf {
    layout.dir(name).join("imds.ready")
}
pub(crate) fn log_file(layout: &Layout, name: &str) -> PathBuf {
    layout.dir(name).join("imds.log")
}

/// An EC2-shaped instance id (`i-` and 17 hex digits) derived from the name,
/// stable for a sandbox so logs and tests can predict it.
pub(crate) fn instance_id(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("i-0{h:016x}")
}

/// Put the metadata address on the namespace's `lo` and start the stand-in.
/// The caller records the process (to stop it) before [`wait_ready`].
pub(crate) async fn start(
    layout: &Layout,
    name: &str,
    address: &str,
    region: &str,
) -> Result<Proc, SandboxError> {
    let ns = net::netns(name);
    let cidr = format!("{ADDRESS}/32");
    let addrs = Cmd::new("ip")
        .args(["-n", &ns, "-4", "-o", "addr", "show", "dev", "lo"])
        .run("read the namespace's loopback addresses")
        .await?;
    if !addrs.contains(&format!(" {cidr} ")) {
        Cmd::new("ip")
            .args(["-n", &ns, "addr", "add", &cidr, "dev", "lo"])
            .run("add the instance metadata address to the namespace's loopback")
            .await?;
    }
    let script = script_path(layout, name);
    std::fs::write(&script, SCRIPT)
        .map_err(|e| SandboxError::io("write the IMDS stand-in", &script, e))?;
    let ready = ready_file(layout, name);
    remove_if_present(&ready)?;
    let log = log_file(layout, name);
    let out = File::create(&log).map_err(|e| SandboxError::io("create the IMDS log", &log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| SandboxError::io("create the IMDS log", &log, e))?;
    info!("starting the IMDS stand-in for {name} at {ADDRESS}:80");
    // setsid(1) and `ip netns exec` exec in place: the PID is python's.
    let child = std::process::Command::new("setsid")
        .args(["ip", "netns", "exec", &ns, "python3"])
        .arg(&script)
        .args(["--address", ADDRESS, "--port", "80", "--region", region])
        .args(["--instance-id", &instance_id(name), "--role", ROLE])
        .args(["--name", name, "--private-ip", address])
        .arg("--ready-file")
        .arg(&ready)
        .env_clear()
        .env("PATH", SANE_PATH)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| SandboxError::io("start the IMDS stand-in", &script, e))?;
    i32::try_from(child.id())
        .ok()
        .and_then(Proc::of)
        .ok_or_else(|| exited(layout, name))
}

/// Poll until the stand-in has written its ready file (it listens then).
pub(crate) async fn wait_ready(
    layout: &Layout,
    name: &str,
    proc: Proc,
) -> Result<(), SandboxError> {
    let ready = ready_file(layout, name);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if ready.exists() {
            return Ok(());
        }
        if !proc.is_alive() {
            return Err(exited(layout, name));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SandboxError::Invalid {
                what: "the IMDS stand-in did not start listening",
                detail: format!(
                    "no ready file after {} s; log: {}",
                    READY_TIMEOUT.as_secs(),
                    log_file(layout, name).display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn exited(layout: &Layout, name: &str) -> SandboxError {
    SandboxError::Invalid {
        what: "the IMDS stand-in exited right after starting",
        detail: format!("log: {}", log_file(layout, name).display()),
    }
}

/// Stop the stand-in by its recorded PID (and start time).
pub(crate) async fn stop(proc: Proc) {
    proc.terminate("the IMDS stand-in", Duration::from_secs(5))
        .await;
}

fn remove_if_present(path: &Path) -> Result<(), SandboxError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SandboxError::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_look_like_ec2_and_are_stable() {
        let id = instance_id("sandbox");
        assert_eq!(id.len(), 19, "{id}");
        assert!(id.starts_with("i-0"));
        assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, instance_id("sandbox"));
        assert_ne!(id, instance_id("sandbox2"));
    }

    #[test]
    fn the_embedded_script_is_the_stand_in() {
        assert!(SCRIPT.starts_with("#!/usr/bin/env python3"));
        assert!(SCRIPT.contains("X-aws-ec2-metadata-token-ttl-seconds"));
    }
}
