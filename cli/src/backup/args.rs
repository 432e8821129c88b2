//! Raw arguments of `backups` and `backup now`.

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::parse::parse_duration;

#[derive(Debug, Args)]
pub struct BackupsArgs {
    /// Print a JSON array (one object per host) instead of text
    #[arg(long)]
    pub json: bool,
    /// Give up on a host that has not answered after this long (hostd reads
    /// the snapshot list from S3)
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Read this host of the environment only
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Start a backup now, one host at a time (a backup already running is
    /// joined, not doubled). With --wait, report each snapshot written; exit
    /// 1 and stop at the first host whose backup failed
    Now(BackupNowArgs),
}

#[derive(Debug, Args)]
pub struct BackupNowArgs {
    /// Wait for the backup to end and report what it wrote
    #[arg(long)]
    pub wait: bool,
    /// Print a JSON array (one object per host) instead of text
    #[arg(long)]
    pub json: bool,
    /// Give up on a host that has not answered after this long [default:
    /// 2h with --wait, as the answer comes when the backup ends; 2m without]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Back up this host of the environment only
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}
