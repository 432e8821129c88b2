//! Raw arguments of `logs`.

use clap::Args;

use crate::parse::parse_service_name;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The service, as named in hostd.toml (e.g. redis)
    #[arg(value_name = "SERVICE", value_parser = parse_service_name)]
    pub service: String,
    /// Keep printing new entries until interrupted
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the latest entries to show per host
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100)]
    pub lines: u32,
    /// Only entries since this time, as journalctl reads it ("2 hours ago",
    /// "2026-01-01 12:00", "yesterday")
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<String>,
    /// Read this host of the environment only
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("give a time, e.g. --since \"2 hours ago\"")]
pub struct NoTime;

/// journalctl parses the value; only what can never work is refused here.
fn parse_since(s: &str) -> Result<String, NoTime> {
    if s.trim().is_empty() {
        Err(NoTime)
    } else {
        Ok(s.to_owned())
    }
}
