//! hostctl, the operator CLI for hosts running hostd. `main.rs` only parses
//! arguments, sets up logging and maps [`Error`] to an exit code.

pub mod backup;
pub mod cli;
pub mod config;
pub mod deploy;
#[cfg(test)]
mod fake_hosts;
pub mod flags;
pub mod fleet;
pub mod host_status;
pub mod jobs;
pub mod logging;
pub mod logs;
pub mod operator;
pub mod output;
pub mod parse;
pub mod restore;
pub mod sandbox;
pub mod secrets;
pub mod service;
pub mod status;
pub mod targets;
pub mod transport;
pub mod upgrade;

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use cli::{Cli, Command};
use hostd_api::ServiceAction;

/// Exit code for usage and configuration mistakes, as clap uses for bad flags.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Status(#[from] status::StatusError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    #[error(transparent)]
    Logs(#[from] logs::LogsError),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error(transparent)]
    Backup(#[from] backup::BackupError),
    #[error(transparent)]
    Restore(#[from] restore::RestoreError),
    #[error(transparent)]
    Deploy(#[from] deploy::DeployError),
    #[error(transparent)]
    Upgrade(#[from] upgrade::UpgradeError),
    #[error(transparent)]
    Jobs(#[from] jobs::JobsError),
    #[error("cannot determine the current directory")]
    CurrentDir(#[source] std::io::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// 2 for what the operator must fix in flags or hostctl.toml, 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Status(e) => e.exit_code(),
            Self::Service(e) => e.exit_code(),
            Self::Secrets(e) => e.exit_code(),
            Self::Backup(e) => e.exit_code(),
            Self::Restore(e) => e.exit_code(),
            Self::Deploy(e) => e.exit_code(),
            Self::Jobs(e) => e.exit_code(),
            Self::Logs(e) => e.exit_code(),
            Self::Sandbox(_) | Self::Upgrade(_) | Self::CurrentDir(_) | Self::Output(_) => {
                ExitCode::FAILURE
            }
        }
    }

    /// What to try next, shown under the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Status(e) => e.hint(),
            Self::Service(e) => e.hint(),
            Self::Secrets(e) => e.hint(),
            Self::Backup(e) => e.hint(),
            Self::Restore(e) => e.hint(),
            Self::Deploy(e) => e.hint(),
            Self::Jobs(e) => e.hint(),
            Self::Upgrade(upgrade::UpgradeError::Transport(e)) => e.hint(),
            Self::Logs(e) => e.hint(),
            _ => None,
        }
    }

    /// A closed pipe (`hostctl status | head`) is not worth an error message.
    pub fn is_broken_pipe(&self) -> bool {
        let io = match self {
            Self::Output(e)
            | Self::Status(status::StatusError::Output(e))
            | Self::Service(service::ServiceError::Output(e))
            | Self::Secrets(secrets::SecretsError::Output(e))
            | Self::Backup(backup::BackupError::Output(e))
            | Self::Restore(restore::RestoreError::Output(e))
            | Self::Deploy(deploy::DeployError::Output(e))
            | Self::Upgrade(upgrade::UpgradeError::Output(e))
            | Self::Jobs(jobs::JobsError::Output(e))
            | Self::Logs(logs::LogsError::Output(e)) => e,
            _ => return false,
        };
        io.kind() == std::io::ErrorKind::BrokenPipe
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Status(args) => Ok(status::run(&args, &cli.global, &current_dir()?).await?),
        Command::Scale(args) => {
            service::scale(&args, &cli.global, &current_dir()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Start(args) => service_action(&cli.global, &args, ServiceAction::Start).await,
        Command::Stop(args) => service_action(&cli.global, &args, ServiceAction::Stop).await,
        Command::Restart(args) => service_action(&cli.global, &args, ServiceAction::Restart).await,
        Command::Logs(args) => {
            logs::run(&args, &cli.global, &current_dir()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets(cmd) => {
            secrets::run(&cmd, &cli.global, &current_dir()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backups(args) => {
            backup::list(&args, &cli.global, &current_dir()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(cmd) => {
            backup::now(&cmd, &cli.global, &current_dir()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => {
            restore::run(&args, &cli.global, &current_dir()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy(a) => {
            let scope =
                deploy::Scope::resolve(&cli.global, a.fleet.host.as_deref(), &current_dir()?)?;
            Ok(deploy::deploy(scope, &a).await?)
        }
        Command::Rollback(a) => {
            let scope =
                deploy::Scope::resolve(&cli.global, a.fleet.host.as_deref(), &current_dir()?)?;
            Ok(deploy::rollback(scope, &a).await?)
        }
        Command::Releases(a) => {
            let r = &a.read;
            let scope = deploy::Scope::resolve(&cli.global, r.host.as_deref(), &current_dir()?)?;
            let unit = scope.service(a.service.as_deref())?.unit.clone();
            Ok(deploy::inspect::releases(&scope.targets.hosts, &unit, r.json, r.timeout).await?)
        }
        Command::Lock(cmd) => {
            let (deploy::args::LockCommand::Status(a) | deploy::args::LockCommand::Release(a)) =
                &cmd;
            let scope = deploy::Scope::resolve(&cli.global, a.host.as_deref(), &current_dir()?)?;
            let release = matches!(cmd, deploy::args::LockCommand::Release(_));
            Ok(deploy::inspect::lock(&scope.targets.hosts, release, a.json, a.timeout).await?)
        }
        Command::Run(args) => Ok(jobs::run_task(&args, &cli.global, &current_dir()?).await?),
        Command::Jobs(args) => Ok(jobs::jobs(&args, &cli.global, &current_dir()?).await?),
        Command::UpgradeHostd(a) => {
            let scope = deploy::Scope::resolve(&cli.global, a.host.as_deref(), &current_dir()?)?;
            Ok(upgrade::run(&scope.targets.hosts, &a).await?)
        }
        Command::Sandbox(cmd) => Ok(sandbox::run(cmd).await?),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hostctl", &mut out);
            std::io::stdout()
                .lock()
                .write_all(&out)
                .map_err(Error::Output)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn current_dir() -> Result<std::path::PathBuf, Error> {
    std::env::current_dir().map_err(Error::CurrentDir)
}

async fn service_action(
    global: &flags::GlobalArgs,
    args: &service::args::ServiceArgs,
    action: ServiceAction,
) -> Result<ExitCode, Error> {
    service::act(args, action, global, &current_dir()?).await?;
    Ok(ExitCode::SUCCESS)
}
