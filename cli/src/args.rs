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
    Deploy(crate::deploy::args::DeployArgs),
    /// Return a service to its previous release (or VERSION) on every host
    Rollback(crate::deploy::args::RollbackArgs),
    /// The releases on each host and the ledger of deploys and rollbacks
    Releases(crate::deploy::args::ReleasesArgs),
    /// The hosts' operations locks (held by a deploy, a restore)
    #[command(subcommand)]
    Lock(crate::deploy::args::LockCommand),
    /// Run a task of a service ([services.NAME.tasks.TASK] in hostctl.toml)
    /// on one host, in its current release with its user, environment and
    /// secrets; print its output as it comes and exit with its exit status
    Run(crate::jobs::args::RunArgs),
    /// The hosts' scheduled jobs (hostd.toml [jobs]): schedule, last run
    /// and result, next run; `hostctl jobs run NAME` runs one now
    Jobs(crate::jobs::args::JobsArgs),
    /// Install a new hostd build on every host, one at a time: hostd checks
    /// it runs there and restarts on it; managed services keep running
    UpgradeHostd(crate::upgrade::UpgradeArgs),
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

/// Flags shared by the commands that change services.
#[derive(Debug, Args)]
pub struct ActionArgs {
    /// Print a JSON array (one object per host) instead of text
    #[arg(long)]
    pub json: bool,
    /// Give up on a request hostd has not answered after this long (hostd
    /// waits for new instances to be healthy, which can take minutes)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Act on this host of the environment only
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Names, versions, last-modified dates and the services using each
    /// parameter, per host; never a value
    List(ActionArgs),
    /// Re-read SSM now, one host at a time; only services whose secrets
    /// changed restart (instances one at a time). Exit 1 when a host's
    /// fetch or a restart failed
    Sync(ActionArgs),
}

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

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The service, as named in hostd.toml (e.g. redis)
    #[arg(value_name = "SERVICE", value_parser = parse_service_name)]
    pub service: String,
    #[command(flatten)]
    pub action: ActionArgs,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// SERVICE=N: run N instances of SERVICE (e.g. api=3)
    #[arg(value_name = "SERVICE=N", required = true, value_parser = parse_scale_target)]
    pub targets: Vec<ScaleTarget>,
    #[command(flatten)]
    pub action: ActionArgs,
}

/// One `SERVICE=N` of `hostctl scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleTarget {
    pub service: String,
    pub instances: u32,
}

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

/// hostd's rule for service names (hostd.toml rejects anything else). Checked
/// here too because the name goes into a URL path and a remote command line,
/// and a typo is better caught before any connection.
pub fn parse_service_name(s: &str) -> Result<String, String> {
    parse_name(s, "service")
}

/// Task names (hostctl.toml) and job names (hostd.toml) follow the service
/// name rule: they go into URL paths and systemd unit names the same way.
pub fn parse_task_name(s: &str) -> Result<String, String> {
    parse_name(s, "task")
}

pub fn parse_job_name(s: &str) -> Result<String, String> {
    parse_name(s, "job")
}

fn parse_name(s: &str, what: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is no {what} name: {what} names are 1 to 32 of a-z, 0-9 and -"
        ))
    }
}

/// `SERVICE=N`, strictly: no spaces, no sign, a whole number.
pub fn parse_scale_target(s: &str) -> Result<ScaleTarget, String> {
    let usage = || format!("expected SERVICE=N, e.g. api=3, not {s:?}");
    let (service, count) = s.split_once('=').ok_or_else(usage)?;
    if service.is_empty() || count.is_empty() {
        return Err(usage());
    }
    let service = parse_service_name(service)?;
    if !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{count:?} is no instance count: write a whole number, e.g. {service}=3"
        ));
    }
    let instances = count
        .parse()
        .map_err(|_| format!("{count} instances is more than anyone can run"))?;
    Ok(ScaleTarget { service, instances })
}

/// journalctl parses the value; only what can never work is refused here.
fn parse_since(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("give a time, e.g. --since \"2 hours ago\"".into())
    } else {
        Ok(s.to_owned())
    }
}

/// hostd's rule: `latest` or at least 8 hex digits of an id. A typo is
/// better caught here than as "no snapshot" after a connection.
fn parse_snapshot(s: &str) -> Result<String, String> {
    let hex = (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
    if s == "latest" || hex {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} is no snapshot: write `latest` or an id from `hostctl backups` (8 hex digits at least)"
        ))
    }
}

/// Zero is allowed here: it means "do not wait".
pub(crate) fn parse_lock_wait(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 0s or 10m)"))
}

/// Whole seconds for hostd's and ssh's second-granular settings, rounded
/// up so that "500ms" still means "wait".
pub(crate) fn seconds_rounded_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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

    #[test]
    fn scale_targets_parse_strictly() {
        let ok = |s| parse_scale_target(s);
        assert_eq!(
            ok("api=3"),
            Ok(ScaleTarget {
                service: "api".into(),
                instances: 3
            })
        );
        assert_eq!(ok("api=0").map(|t| t.instances), Ok(0));
        for bad in [
            "api",
            "api=",
            "=3",
            "api=3x",
            "api=+3",
            "api=-1",
            "api= 3",
            " api=3",
            "API=3",
            "api=3=4",
            "a/b=1",
            "api=99999999999",
        ] {
            let err = ok(bad).err().unwrap_or_default();
            assert!(!err.is_empty(), "{bad:?} was accepted");
        }
        assert!(
            ok("api")
                .err()
                .unwrap_or_default()
                .contains("SERVICE=N, e.g. api=3"),
            "usage names the form"
        );
        assert!(
            ok("api=x")
                .err()
                .unwrap_or_default()
                .contains("whole number")
        );
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
