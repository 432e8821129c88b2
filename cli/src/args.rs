//! Raw command-line arguments, as clap parses them. Turned into validated
//! settings by each command before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::sandbox::SandboxCommand;

#[derive(Debug, Parser)]
#[command(name = "hostctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show hostd, unit and health status of every host in the environment
    Status(StatusArgs),
    /// Run and manage sandbox hosts on this machine
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Print a shell completion script to stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print a JSON array (one object per host) instead of text
    #[arg(long)]
    pub json: bool,
    /// Give up on a host that has not answered after this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Ask again until every host is serving or this long has passed, then
    /// report the last answers (for runbooks: "wait until healthy")
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (write e.g. 30s or 2m)")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["hostctl", "status", "-e", "prod", "-vv", "--json"])?;
        assert_eq!(cli.global.env.as_deref(), Some("prod"));
        assert_eq!(cli.global.verbose, 2);
        assert!(matches!(
            cli.command,
            Command::Status(StatusArgs { json: true, .. })
        ));
        Ok(())
    }
}
