//! Raw arguments of `hostctl setup`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::parse::parse_duration;

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The host to set up (a host of the environment); without it, every
    /// host of the environment, one at a time
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
    /// The hostd build to install, with hostd-front beside it [default: the
    /// hostd beside this hostctl]
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// A package of the host's distribution the apps run on (nodejs,
    /// python3...), installed with the rest; repeatable
    #[arg(long = "package", value_name = "NAME")]
    pub packages: Vec<String>,
    /// Give up on a host's provisioning (packages included) after this long
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print each host's setup and apply as one JSON document, and no
    /// progress
    #[arg(long)]
    pub json: bool,
}
