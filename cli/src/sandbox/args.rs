//! Raw arguments of `sandbox up|down|exec|list`.

use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Build (once, cached) and boot a sandbox host: a real systemd host in a
    /// container, provisioned like an EC2 host, with an AWS stand-in.
    /// Prints the path of a hostctl.toml targeting it.
    Up {
        /// Sandbox name: [a-z0-9][a-z0-9-]{0,11}
        #[arg(long, default_value = "sandbox")]
        name: String,
        /// hostd binary to install, with the `hostd-front` beside it
        /// (default: `hostd` next to the running hostctl executable)
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
