//! Flag groups that several commands share, with the same help text for
//! each: the global flags, and the host/json/timeout groups of the
//! commands that read every host or change services.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::parse::parse_duration;

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More logs on stderr: -v info, -vv debug (shows ssh's stderr), -vvv trace
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Config file (default: hostctl.toml in the current directory or a parent)
    #[arg(long, value_name = "PATH", env = "HOSTCTL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Environment to act on (default: default_environment, or the only one)
    #[arg(short = 'e', long = "env", value_name = "ENV", global = true)]
    pub env: Option<String>,
}

/// Reading (or clearing) something on every host at once.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// This host of the environment only
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Print a JSON array (one object per host) instead of text
    #[arg(long)]
    pub json: bool,
    /// Give up on a host that has not answered after this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Flags shared by the commands that change services.
#[derive(Debug, Args)]
pub struct ActionArgs {
    /// Print a JSON array (one object per host) instead of text
    #[arg(long)]
    pub json: bool,
    /// Give up on a request hostd has not answered after this long (hostd
    /// waits for new instances to be healthy, which can take minutes)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Act on this host of the environment only
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}
