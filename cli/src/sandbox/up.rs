//! `sandbox up`: every step registers its undo; on failure or Ctrl-C the
//! undo list runs in reverse, so nothing is left half-started.

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use super::cmd::{Cmd, require_tools};
use super::down::{self, release_shared};
use super::proc::Proc;
use super::state::{Layout, SandboxState, render_hostctl_toml, validate_name};
use super::{SSH_USER, SandboxError, aws, host, imds, net, rootfs};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// What `up --json` prints.
#[derive(Debug, Serialize)]
pub(super) struct UpOutput {
    pub name: String,
    pub address: String,
    pub hostctl_toml: PathBuf,
    pub ssh_user: &'static str,
    pub identity_file: PathBuf,
    pub known_hosts: PathBuf,
    pub aws_endpoint: String,
    /// What the IMDSv2 stand-in reports as this instance.
    pub instance_id: String,
    pub console_log: PathBuf,
    pub pid: Option<i32>,
}

/// Things to take down again if `up` fails, in the order they were set up.
enum Undo {
    /// Stop moto and the bridge if no sandbox remains (registered first, runs last).
    ReleaseShared,
    RemoveDir(String),
    DeleteNamespace(String),
    /// Also removes nspawn's leftovers for this root.
    Unmount(String),
    StopImds(Proc),
    StopNspawn(Proc),
}

/// What a sandbox gets before it boots.
pub(crate) enum Setup {
    /// Provisioned with packer/provision.sh (hostd, units, an initial API
    /// release): the host an AMI built from this tree boots as.
    Provisioned {
        hostd: Option<PathBuf>,
        api: Option<PathBuf>,
    },
    /// Only what an EC2 base image has (a sudo user with the launch key),
    /// for Packer to provision over SSH.
    Bare,
}

/// The binaries a provisioned sandbox installs, checked before anything starts.
struct Binaries {
    hostd: PathBuf,
    api: Option<PathBuf>,
}

fn binaries(hostd: Option<PathBuf>, api: Option<PathBuf>) -> Result<Binaries, SandboxError> {
    let hostd = match hostd {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| SandboxError::io("find the running executable", "/proc/self/exe", e))?
            .with_file_name("hostd"),
    };
    host::check_hostd(&hostd)?;
    host::check_hostd(&host::front_beside(&hostd))?;
    let api = match api {
        Some(p) => {
            host::check_hostd(&p)?;
            Some(p)
        }
        None => Some(hostd.with_file_name("demo-backend")).filter(|p| p.is_file()),
    };
    Ok(Binaries { hostd, api })
}

pub(crate) async fn up(
    layout: &Layout,
    name: &str,
    setup: Setup,
) -> Result<UpOutput, SandboxError> {
    validate_name(name)?;
    let binaries = match setup {
        Setup::Provisioned { hostd, api } => Some(binaries(hostd, api)?),
        Setup::Bare => None,
    };
    require_tools(&[
        ("systemd-nspawn", "systemd-container"),
        ("ip", "iproute2"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("python3", "python3 python3-venv"),
        ("setsid", "util-linux"),
        ("mount", "mount"),
    ])?;
    layout.create_base()?;

    let mut undo = Vec::new();
    let result = tokio::select! {
        r = build(layout, name, binaries.as_ref(), &mut undo) => r,
        _ = tokio::signal::ctrl_c() => Err(SandboxError::Interrupted),
    };
    match result {
        Ok(out) => Ok(out),
        Err(e) => {
            rootfs::discard_partial_build(layout).await;
            if !undo.is_empty() {
                match &e {
                    SandboxError::Interrupted => warn!("interrupted; undoing what was started"),
                    _ => warn!("sandbox up failed: {e}; undoing what was started"),
                }
                run_undo(layout, undo).await;
            }
            Err(e)
        }
    }
}

async fn build(
    layout: &Layout,
    name: &str,
    binaries: Option<&Binaries>,
    undo: &mut Vec<Undo>,
) -> Result<UpOutput, SandboxError> {
    let cache = rootfs::ensure_cache(layout).await?;

    // Allocation, bridge and moto under the lock; the slow rest without it.
    let guard = layout.lock(".lock").await?;
    if let Some(existing) = layout.load(name)? {
        return already_there(layout, existing);
    }
    let used: Vec<u32> = layout.all()?.iter().map(|s| s.index).collect();
    let index = net::lowest_free_index(&used).ok_or(SandboxError::NoFreeAddress)?;
    let address = net::address_for(index).ok_or(SandboxError::NoFreeAddress)?;
    info!("sandbox {name}: address {address}");
    undo.push(Undo::ReleaseShared);
    let dir = layout.dir(name);
    std::fs::create_dir(&dir)
        .map_err(|e| SandboxError::io("create the sandbox directory", &dir, e))?;
    undo.push(Undo::RemoveDir(name.to_owned()));
    let mut state = SandboxState {
        name: name.to_owned(),
        index,
        address: address.to_string(),
        nspawn: None,
        overlay: false,
        imds: None,
    };
    layout.save(&state)?;
    aws::ensure(layout).await?;
    undo.push(Undo::DeleteNamespace(name.to_owned()));
    net::ensure_namespace(name, address).await?;
    drop(guard);
    // Before boot, so hostd finds instance metadata from its first start.
    let metadata = imds::start(layout, name, &state.address, aws::REGION).await?;
    undo.push(Undo::StopImds(metadata));
    state.imds = Some(metadata);
    layout.save(&state)?;
    imds::wait_ready(layout, name, metadata).await?;

    let root = layout.root(name);
    undo.push(Undo::Unmount(name.to_owned()));
    state.overlay = rootfs::prepare_root(&cache, &dir).await?;
    layout.save(&state)?;
    host::set_identity(&root, name).await?;
    match binaries {
        Some(b) => {
            let log = dir.join("provision.log");
            host::provision(&root, name, &b.hostd, b.api.as_deref(), &log).await?;
            host::operator_access(layout, name, &state.address).await?;
        }
        None => host::bare_access(layout, name, &state.address).await?,
    }

    down::clean_nspawn_leftovers(name, &root);
    let nspawn = start_nspawn(layout, name)?;
    undo.push(Undo::StopNspawn(nspawn));
    state.nspawn = Some(nspawn);
    layout.save(&state)?;
    wait_booted(layout, &state, nspawn).await?;

    let toml_path = layout.hostctl_toml(name);
    rootfs::write(
        &toml_path,
        &render_hostctl_toml(
            name,
            &state.address,
            SSH_USER,
            &layout.identity(name),
            &layout.known_hosts(name),
        ),
    )?;
    info!("sandbox {name} is up at {address}");
    Ok(output(layout, &state))
}

/// `up` of an existing name: success (same output) when it runs, else an error.
fn already_there(layout: &Layout, s: SandboxState) -> Result<UpOutput, SandboxError> {
    if s.nspawn.is_none() {
        return Err(SandboxError::Busy { name: s.name });
    }
    if !s.is_running() || !layout.hostctl_toml(&s.name).exists() {
        return Err(SandboxError::NotRunning { name: s.name });
    }
    info!(
        "sandbox {} is already running; run `hostctl sandbox down --name {}` first to rebuild it",
        s.name, s.name
    );
    Ok(output(layout, &s))
}

fn output(layout: &Layout, s: &SandboxState) -> UpOutput {
    UpOutput {
        name: s.name.clone(),
        address: s.address.clone(),
        hostctl_toml: layout.hostctl_toml(&s.name),
        ssh_user: SSH_USER,
        identity_file: layout.identity(&s.name),
        known_hosts: layout.known_hosts(&s.name),
        aws_endpoint: aws::endpoint(),
        instance_id: imds::instance_id(&s.name),
        console_log: layout.console_log(&s.name),
        pid: s.nspawn.map(|p| p.pid),
    }
}

/// Boot the sandbox detached: own session, stdin null, console to a file.
fn start_nspawn(layout: &Layout, name: &str) -> Result<Proc, SandboxError> {
    let log_path = layout.console_log(name);
    let log = File::create(&log_path)
        .map_err(|e| SandboxError::io("create the console log", &log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| SandboxError::io("create the console log", &log_path, e))?;
    let root = layout.root(name);
    info!("booting {name} with systemd-nspawn");
    // setsid(1) execs in place since we are not a process group leader, so
    // the PID is systemd-nspawn's.
    let child = std::process::Command::new("setsid")
        .args(["systemd-nspawn", "--quiet", "-D"])
        .arg(&root)
        .args(["-b", "--register=no", "--keep-unit", "--console=read-only"])
        // The bpf() system call and its capabilities, which nspawn withholds
        // by default: systemd needs them for the units' IPAddressDeny= (the
        // instance metadata guard), as it has them on an EC2 instance.
        .args([
            "--system-call-filter=bpf",
            "--capability=CAP_BPF,CAP_PERFMON",
        ])
        .arg(format!(
            "--network-namespace-path=/run/netns/{}",
            net::netns(name)
        ))
        .arg(format!("--machine={}", net::netns(name)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| SandboxError::io("start systemd-nspawn", &root, e))?;
    i32::try_from(child.id())
        .ok()
        .and_then(Proc::of)
        .ok_or(SandboxError::NspawnExited {
            name: name.to_owned(),
            console_log: log_path,
        })
}

/// Poll SSH until `systemctl is-system-running --wait` answers.
async fn wait_booted(layout: &Layout, s: &SandboxState, nspawn: Proc) -> Result<(), SandboxError> {
    let name = &s.name;
    let console_log = layout.console_log(name);
    let deadline = tokio::time::Instant::now() + BOOT_TIMEOUT;
    loop {
        if !nspawn.is_alive() {
            return Err(SandboxError::NspawnExited {
                name: name.clone(),
                console_log,
            });
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(SandboxError::BootTimeout {
                name: name.clone(),
                secs: BOOT_TIMEOUT.as_secs(),
                console_log,
            });
        }
        let probe = ssh(layout, s, &["systemctl", "is-system-running", "--wait"]);
        if let Ok(Ok(out)) = tokio::time::timeout(left, probe).await {
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            match state.as_str() {
                "running" => return Ok(()),
                "degraded" => {
                    warn_failed_units(layout, s).await;
                    return Ok(());
                }
                "maintenance" | "stopping" => {
                    return Err(SandboxError::BootFailed {
                        name: name.clone(),
                        state,
                        console_log,
                    });
                }
                // ssh failed (exit 255: not up yet), or systemd is still
                // "initializing"/"starting"/unreachable: retry.
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn warn_failed_units(layout: &Layout, s: &SandboxState) {
    let failed = ssh(
        layout,
        s,
        &[
            "systemctl",
            "--failed",
            "--plain",
            "--no-legend",
            "--no-pager",
        ],
    )
    .await
    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    .unwrap_or_default();
    let units: Vec<&str> = failed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    warn!(
        "sandbox {} is degraded; failed units: {}",
        s.name,
        if units.is_empty() {
            "?".to_owned()
        } else {
            units.join(", ")
        }
    );
}

/// Run a command in the sandbox over SSH with the pinned host key.
async fn ssh(
    layout: &Layout,
    s: &SandboxState,
    command: &[&str],
) -> Result<std::process::Output, SandboxError> {
    Cmd::new("ssh")
        .args(["-F", "none", "-i"])
        .arg(layout.identity(&s.name))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            layout.known_hosts(&s.name).display()
        ))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("{SSH_USER}@{}", s.address))
        .args(command)
        .run_unchecked("ssh into the sandbox")
        .await
}

async fn run_undo(layout: &Layout, undo: Vec<Undo>) {
    for step in undo.into_iter().rev() {
        let r = match step {
            Undo::StopNspawn(p) => {
                p.terminate("systemd-nspawn", down::STOP_GRACE).await;
                Ok(())
            }
            Undo::Unmount(name) => {
                down::clean_nspawn_leftovers(&name, &layout.root(&name));
                rootfs::umount_below(&layout.dir(&name)).await
            }
            Undo::StopImds(p) => {
                imds::stop(p).await;
                Ok(())
            }
            Undo::DeleteNamespace(name) => net::delete_namespace(&name).await,
            Undo::RemoveDir(name) => rootfs::remove_tree(&layout.dir(&name)).await,
            Undo::ReleaseShared => release_shared(layout).await,
        };
        if let Err(e) = r {
            warn!("undo step failed: {e}");
        }
    }
}
