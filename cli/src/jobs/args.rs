//! Raw arguments of `run` and `jobs`.

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::flags::ReadArgs;
use crate::parse::{parse_duration, parse_job_name, parse_service_name, parse_task_name};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service, as named by a [services.NAME] table in hostctl.toml
    #[arg(value_name = "SERVICE", value_parser = parse_service_name)]
    pub service: String,
    /// The task, as named by a [services.SERVICE.tasks.NAME] table
    #[arg(value_name = "TASK", value_parser = parse_task_name)]
    pub task: String,
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// `jobs` lists; `jobs run NAME` runs one. Flags of the listing go before
/// no subcommand, so `jobs --json run x` is refused rather than ambiguous.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub command: Option<JobsCommand>,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Run a job now on one host and print its output as it comes; exit
    /// with the job's exit status (hostd refuses a job already running)
    Run(JobRunArgs),
}

#[derive(Debug, Args)]
pub struct JobRunArgs {
    /// The job, as named by a [jobs.NAME] table in the host's hostd.toml
    #[arg(value_name = "NAME", value_parser = parse_job_name)]
    pub name: String,
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// Following one run on one host.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// The host to run on (required when the environment has several)
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Print hostd's events as JSON lines instead of the output
    #[arg(long)]
    pub json: bool,
    /// Stop following the run after this long [default: the task's timeout
    /// and a minute; 6h for a job]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}
