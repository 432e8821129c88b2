//! Raw arguments of `upgrade-hostd`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::parse::parse_duration;

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The hostd build to install (for the hosts' architecture)
    #[arg(long, value_name = "PATH")]
    pub binary: PathBuf,
    /// This host of the environment only
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Give up on a host after this long
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the per-host summary as a JSON array
    #[arg(long)]
    pub json: bool,
}
