//! Raw arguments of `restore`.

use std::time::Duration;

use clap::Args;

use crate::parse::{parse_duration, parse_lock_wait};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// `latest`, or a snapshot id or a unique prefix of one (8 characters at
    /// least) from `hostctl backups`: the backup run that wrote it is
    /// restored
    #[arg(value_name = "SNAPSHOT", value_parser = parse_snapshot)]
    pub snapshot: String,
    /// Restore only these kinds (repeat or separate with commas) [default:
    /// every kind the run holds]
    #[arg(long, value_name = "KIND", value_enum, value_delimiter = ',')]
    pub only: Vec<RestoreKind>,
    /// Show the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Restore without asking (needed when stdin is no terminal)
    #[arg(short, long)]
    pub yes: bool,
    /// Print hostd's events as JSON lines instead of text
    #[arg(long)]
    pub json: bool,
    /// The host to restore (required when the environment has several)
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Wait this long for the host's operations lock when another
    /// operation (a backup, a deploy) holds it; 0: fail at once
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_lock_wait)]
    pub lock_wait: Duration,
    /// Stop following the restore after this long (hostd carries it on)
    #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `--only`'s values; clap cannot derive its traits on hostd-api's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreKind {
    Postgres,
    Redis,
    Files,
}

impl From<RestoreKind> for hostd_api::BackupKind {
    fn from(k: RestoreKind) -> Self {
        match k {
            RestoreKind::Postgres => Self::Postgres,
            RestoreKind::Redis => Self::Redis,
            RestoreKind::Files => Self::Files,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is no snapshot: write `latest` or an id from `hostctl backups` (8 hex digits at least)"
)]
pub struct NoSnapshot(String);

/// hostd's rule: `latest` or at least 8 hex digits of an id. A typo is
/// better caught here than as "no snapshot" after a connection.
fn parse_snapshot(s: &str) -> Result<String, NoSnapshot> {
    let hex = (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
    if s == "latest" || hex {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(NoSnapshot(s.to_owned()))
    }
}
