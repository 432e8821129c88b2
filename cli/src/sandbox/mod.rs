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

mod aws;
mod cmd;
mod down;
mod error;
mod exec;
mod host;
mod imds;
mod net;
mod proc;
mod rootfs;
mod state;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

pub use error::SandboxError;

/// The operator account created in every sandbox (and on EC2 hosts).
pub(crate) const SSH_USER: &str = "admin";

#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Build (once, cached) and boot a sandbox host: a real systemd host in a
    /// container, provisioned like an EC2 host, with an AWS stand-in.
    /// Prints the path of a hostctl.toml targeting it.
    Up {
        /// Sandbox name: [a-z0-9][a-z0-9-]{0,11}
        #[arg(long, default_value = "sandbox")]
        name: String,
        /// hostd binary to install (default: `hostd` next to the running hostctl executable)
        #[arg(long)]
        hostd: Option<PathBuf>,
        /// API binary installed as the initial release, /srv/api/current/bin/api
        /// (default: `demo-backend` next to the hostd binary, when built)
        #[arg(long)]
        api: Option<PathBuf>,
        /// Boot an unprovisioned host, as an EC2 base image boots: the
        /// operator account with passwordless sudo and nothing of hostd's
        /// (provision it with Packer's null source, packer/hostd.pkr.hcl)
        #[arg(long, conflicts_with_all = ["hostd", "api"])]
        bare: bool,
        /// Print a JSON object instead of the hostctl.toml path
        #[arg(long)]
        json: bool,
    },
    /// Stop a sandbox and remove everything it used.
    Down {
        #[arg(long, default_value = "sandbox")]
        name: String,
        /// stop every sandbox and the AWS stand-in
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
    /// Run a command as root inside a sandbox (what `sudo` is on a real host).
    Exec {
        #[arg(long, default_value = "sandbox")]
        name: String,
        /// The command and its arguments, after `--`
        #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// List sandboxes.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// Run a sandbox subcommand. Data goes to stdout, progress to `tracing`.
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
            up::up(&layout, &name, setup, json).await
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
        SandboxCommand::List { json } => down::list(&layout, json),
    }
}

fn require_root() -> Result<(), SandboxError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(SandboxError::NotRoot)
    }
}
