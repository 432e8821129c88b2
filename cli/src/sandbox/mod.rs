//! `hostctl sandbox up|down|list`: real systemd hosts on this machine.
//!
//! A sandbox is a Debian root filesystem (debootstrap, cached) booted with
//! `systemd-nspawn` in its own network namespace, provisioned by the same
//! `packer/provision.sh` that builds the EC2 image, and reachable over SSH with
//! a generated key and a pinned host key. An AWS stand-in (moto) runs in a
//! network namespace of its own and is shared by all sandboxes.
//!
//! Layout of the state directory (`/var/lib/hostctl/sandbox`, or
//! `$HOSTCTL_SANDBOX_DIR`):
//!
//! ```text
//! .lock                 serialises allocation, bridge and moto set-up
//! .rootfs.lock          serialises the root filesystem cache build
//! rootfs-<key>/         cached root filesystem (read-only lower layer)
//! aws/                  venv/, moto.log, moto.json (pid)
//! NAME/                 state.json, root/ (+ upper/, work/), id_ed25519,
//!                       known_hosts, hostctl.toml, console.log, provision.log,
//!                       imds_standin.py, imds.log, imds.ready (IMDSv2 stand-in)
//! ```

pub mod args;
mod aws;
mod cmd;
mod down;
mod error;
mod exec;
mod host;
mod imds;
mod net;
mod proc;
mod render;
mod rootfs;
mod state;
mod up;

use std::process::ExitCode;

pub use args::SandboxCommand;
pub use error::SandboxError;

/// The operator account created in every sandbox (and on EC2 hosts).
pub(crate) const SSH_USER: &str = "admin";

/// Run a sandbox subcommand. Data goes to stdout (render.rs), progress to
/// `tracing`.
pub async fn run(cmd: SandboxCommand) -> Result<ExitCode, SandboxError> {
    let layout = state::Layout::from_env();
    match cmd {
        SandboxCommand::Up {
            name,
            hostd,
            api,
            bare,
            json,
        } => {
            require_root()?;
            let setup = if bare {
                up::Setup::Bare
            } else {
                up::Setup::Provisioned { hostd, api }
            };
            let up = up::up(&layout, &name, setup).await?;
            render::up(&up, json)?;
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Down { name, all } => {
            require_root()?;
            if all {
                down::down_all(&layout).await
            } else {
                down::down_one(&layout, &name).await
            }
        }
        SandboxCommand::Exec { name, command } => {
            require_root()?;
            exec::exec(&layout, &name, &command).await
        }
        SandboxCommand::List { json } => {
            render::list(&down::list(&layout)?, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn require_root() -> Result<(), SandboxError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(SandboxError::NotRoot)
    }
}
