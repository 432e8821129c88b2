//! Raw arguments of `status`.

use std::time::Duration;

use clap::Args;

use crate::parse::parse_duration;

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
