//! Raw arguments of `diff`, `apply` and `applies`.

use std::time::Duration;

use clap::Args;

use crate::flags::ReadArgs;
use crate::parse::{parse_duration, parse_lock_wait};

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct AppliesArgs {
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply on this host of the environment only
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Hosts changed at once; the next batch starts when the whole batch
    /// is healthy on the new configuration, and the first failure stops
    /// the rest
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Apply without asking (needed when stdin is no terminal)
    #[arg(short, long)]
    pub yes: bool,
    /// Show what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Wait this long for a host's operations lock when another operation
    /// (a deploy, a restore) holds it; 0: fail at once
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_lock_wait)]
    pub lock_wait: Duration,
    /// How long a host may take to report healthy on the new configuration
    /// before hostd puts the previous one back [default: hostd's, 2m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_timeout: Option<Duration>,
    /// Stop following a host after this long (hostd finishes or puts the
    /// previous configuration back by itself)
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the plans and each host's apply record as one JSON document,
    /// and no progress
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn apply_flags_parse_and_a_zero_batch_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let argv = [
            "hostctl",
            "apply",
            "-y",
            "--batch-size",
            "2",
            "--lock-wait",
            "10m",
            "--health-timeout",
            "90s",
            "--dry-run",
            "--json",
            "-e",
            "prod",
        ];
        let Command::Apply(a) = Cli::try_parse_from(argv)?.command else {
            return Err("not parsed as apply".into());
        };
        assert!(a.yes && a.dry_run && a.json && a.host.is_none());
        assert_eq!(a.batch_size, 2);
        assert_eq!(a.lock_wait, Duration::from_secs(600));
        assert_eq!(a.health_timeout, Some(Duration::from_secs(90)));
        assert_eq!(a.timeout, Duration::from_secs(30 * 60));
        let Command::Apply(a) = Cli::try_parse_from(["hostctl", "apply"])?.command else {
            return Err("not parsed as apply".into());
        };
        assert!(!a.yes && a.batch_size == 1 && a.lock_wait.is_zero() && a.health_timeout.is_none());
        for bad in [
            &["hostctl", "apply", "--batch-size", "0"][..],
            &["hostctl", "apply", "--health-timeout", "0s"],
            &["hostctl", "diff", "--yes"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} was accepted");
        }
        let Command::Diff(d) =
            Cli::try_parse_from(["hostctl", "diff", "--json", "--host", "a"])?.command
        else {
            return Err("not parsed as diff".into());
        };
        assert!(d.read.json && d.read.host.as_deref() == Some("a"));
        Ok(())
    }
}
