//! The command line as clap parses it: the global flags and one variant
//! per command, holding that command's own raw arguments (each command's
//! `args` module). Each command resolves them into validated settings
//! before anything runs.

use clap::{Parser, Subcommand};

use crate::backup::args::{BackupCommand, BackupsArgs};
use crate::deploy::args::{DeployArgs, RollbackArgs};
use crate::flags::GlobalArgs;
use crate::host_config::args::{AppliesArgs, ApplyArgs, DiffArgs};
use crate::jobs::args::{JobsArgs, RunArgs};
use crate::lock::args::LockCommand;
use crate::logs::args::LogsArgs;
use crate::releases::args::ReleasesArgs;
use crate::restore::args::RestoreArgs;
use crate::sandbox::SandboxCommand;
use crate::secrets::args::SecretsCommand;
use crate::service::args::{ScaleArgs, ServiceArgs};
use crate::setup::args::SetupArgs;
use crate::status::args::StatusArgs;
use crate::upgrade::args::UpgradeArgs;

#[derive(Debug, Parser)]
#[command(name = "hostctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show hostd, unit and health status of every host in the environment
    Status(StatusArgs),
    /// Run and manage sandbox hosts on this machine
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Set the instance count of instanced services on every host, one host
    /// at a time (e.g. `hostctl scale api=3`)
    Scale(ScaleArgs),
    /// Start a service on every host, one host at a time
    Start(ServiceArgs),
    /// Stop a service on every host, one host at a time (hostd keeps it
    /// stopped until `hostctl start`)
    Stop(ServiceArgs),
    /// Restart a service on every host, one host at a time
    Restart(ServiceArgs),
    /// Show a service's journal from every host (over ssh, no sudo needed)
    Logs(LogsArgs),
    /// Secrets from SSM Parameter Store: list what each host uses (never
    /// values), or re-read them now
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// The host's backup repository: snapshots, last run, last restore
    /// drill and next run, per host
    Backups(BackupsArgs),
    /// Back up now (`hostctl backup now`)
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Restore one host from a backup run: shows the plan, asks, then
    /// stops the app, restores and starts it again, reporting each step
    Restore(RestoreArgs),
    /// Build, ship and switch to a new release of a service, host by host:
    /// each instance restarts healthy on it or the host returns to the
    /// previous release
    Deploy(DeployArgs),
    /// Return a service to its previous release (or VERSION) on every host
    Rollback(RollbackArgs),
    /// The releases on each host and the ledger of deploys and rollbacks
    Releases(ReleasesArgs),
    /// The hosts' operations locks (held by a deploy, a restore)
    #[command(subcommand)]
    Lock(LockCommand),
    /// Run a task of a service ([services.NAME.tasks.TASK] in hostctl.toml)
    /// on one host, in its current release with its user, environment and
    /// secrets; print its output as it comes and exit with its exit status
    Run(RunArgs),
    /// The hosts' scheduled jobs (hostd.toml [jobs]): schedule, last run
    /// and result, next run; `hostctl jobs run NAME` runs one now
    Jobs(JobsArgs),
    /// Install a new hostd build on every host, one at a time: hostd checks
    /// it runs there and restarts on it; managed services keep running
    UpgradeHostd(UpgradeArgs),
    /// What applying the hostd.toml declared in hostctl.toml (hostd_config)
    /// would change on each host: keys, generated unit files, actions.
    /// Exit 0 when no host would change, 1 when one would
    Diff(DiffArgs),
    /// Apply the declared hostd.toml host by host, after showing the plan
    /// and asking: each host ends healthy on it or hostd puts the previous
    /// one back; the first failure stops the rest
    Apply(ApplyArgs),
    /// Each host's ledger of applies: when, who, from which file, outcome
    Applies(AppliesArgs),
    Setup(SetupArgs),
    /// Print a shell completion script to stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use std::time::Duration;

    use super::*;
    use crate::backup::args::BackupNowArgs;
    use crate::flags::ActionArgs;
    use crate::restore::args::RestoreKind;

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

    #[test]
    fn bad_scale_argument_is_a_usage_error_exiting_2() {
        let err = Cli::try_parse_from(["hostctl", "scale", "api"]).err();
        let err = err
            .map(|e| (e.exit_code(), e.to_string()))
            .unwrap_or_default();
        assert_eq!(err.0, 2);
        assert!(err.1.contains("expected SERVICE=N"), "{}", err.1);
        let several = Cli::try_parse_from(["hostctl", "scale", "api=3", "worker=2", "--json"]);
        assert!(
            matches!(several, Ok(Cli { command: Command::Scale(ScaleArgs { ref targets, .. }), .. }) if targets.len() == 2)
        );
        assert!(Cli::try_parse_from(["hostctl", "scale"]).is_err());
    }

    #[test]
    fn secrets_subcommands_take_the_action_flags() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["hostctl", "secrets", "sync", "--json", "--host", "a"])?;
        assert!(matches!(
            cli.command,
            Command::Secrets(SecretsCommand::Sync(ActionArgs { json: true, host: Some(ref h), .. })) if h == "a"
        ));
        let cli = Cli::try_parse_from(["hostctl", "secrets", "list"])?;
        assert!(matches!(
            cli.command,
            Command::Secrets(SecretsCommand::List(ActionArgs {
                json: false,
                host: None,
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["hostctl", "secrets", "show"]).is_err());
        Ok(())
    }

    #[test]
    fn backup_commands_parse() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["hostctl", "backups", "--json", "--host", "a"])?;
        assert!(matches!(
            cli.command,
            Command::Backups(BackupsArgs { json: true, host: Some(ref h), .. }) if h == "a"
        ));
        let cli = Cli::try_parse_from(["hostctl", "backup", "now", "--wait", "--timeout", "3h"])?;
        assert!(matches!(
            cli.command,
            Command::Backup(BackupCommand::Now(BackupNowArgs {
                wait: true,
                json: false,
                timeout: Some(t),
                ..
            })) if t == Duration::from_secs(3 * 3600)
        ));
        assert!(Cli::try_parse_from(["hostctl", "backup"]).is_err());
        assert!(Cli::try_parse_from(["hostctl", "backup", "later"]).is_err());
        Ok(())
    }

    #[test]
    fn restore_parses_kinds_waits_and_refuses_bad_ids() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "hostctl",
            "restore",
            "0123ABCD",
            "--only",
            "postgres,redis",
            "--only",
            "files",
            "-y",
            "--lock-wait",
            "10m",
        ])?;
        let Command::Restore(a) = cli.command else {
            return Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand));
        };
        assert_eq!(a.snapshot, "0123abcd");
        assert_eq!(
            a.only,
            [
                RestoreKind::Postgres,
                RestoreKind::Redis,
                RestoreKind::Files
            ]
        );
        assert!(a.yes && !a.dry_run && !a.json && a.host.is_none());
        assert_eq!(a.lock_wait, Duration::from_secs(600));
        assert_eq!(a.timeout, Duration::from_secs(6 * 3600));
        let cli = Cli::try_parse_from(["hostctl", "restore", "latest", "--dry-run", "--json"])?;
        let Command::Restore(a) = cli.command else {
            return Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand));
        };
        assert!(a.dry_run && a.json && a.only.is_empty() && a.lock_wait.is_zero());
        for bad in [
            vec!["hostctl", "restore"],
            vec!["hostctl", "restore", "0123abc"],
            vec!["hostctl", "restore", "newest"],
            vec!["hostctl", "restore", "latest", "--only", "mysql"],
            vec!["hostctl", "restore", "latest", "--timeout", "0s"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?} was accepted");
        }
        Ok(())
    }

    #[test]
    fn logs_defaults_and_short_flags() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["hostctl", "logs", "redis", "-f", "-n", "5"])?;
        let Command::Logs(args) = cli.command else {
            return Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand));
        };
        assert!(args.follow);
        assert_eq!(args.lines, 5);
        let cli = Cli::try_parse_from(["hostctl", "logs", "redis", "--since", "2 hours ago"])?;
        let Command::Logs(args) = cli.command else {
            return Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand));
        };
        assert_eq!(args.lines, 100);
        assert_eq!(args.since.as_deref(), Some("2 hours ago"));
        Ok(())
    }
}
