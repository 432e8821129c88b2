//! hostctl, the operator CLI for hosts running hostd. `main.rs` only parses
//! arguments, sets up logging and maps [`Error`] to an exit code.

pub mod artifact;
pub mod backup;
pub mod cli;
pub mod config;
pub mod confirm;
pub mod deploy;
pub mod error;
pub mod exit;
#[cfg(test)]
mod fake_hosts;
pub mod flags;
pub mod fleet;
pub mod followed;
pub mod host_config;
pub mod host_status;
pub mod jobs;
pub mod lock;
pub mod logging;
pub mod logs;
pub mod operator;
pub mod output;
pub mod parse;
pub mod releases;
pub mod restore;
pub mod sandbox;
pub mod secrets;
pub mod service;
pub mod setup;
pub mod status;
pub mod targets;
pub mod transport;
pub mod upgrade;

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use hostd_api::ServiceAction;

use cli::{Cli, Command};
pub use error::Error;

/// Runs the command: each resolves its settings from the flags and
/// hostctl.toml, acts, and renders what came back.
pub async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let g = &cli.global;
    // Only the commands that read hostctl.toml need it.
    let cwd = || std::env::current_dir().map_err(Error::CurrentDir);
    Ok(match cli.command {
        Command::Status(a) => status::run(&a, g, &cwd()?).await?,
        Command::Scale(a) => service::scale(&a, g, &cwd()?).await?,
        Command::Start(a) => service::act(&a, ServiceAction::Start, g, &cwd()?).await?,
        Command::Stop(a) => service::act(&a, ServiceAction::Stop, g, &cwd()?).await?,
        Command::Restart(a) => service::act(&a, ServiceAction::Restart, g, &cwd()?).await?,
        Command::Logs(a) => logs::run(&a, g, &cwd()?).await?,
        Command::Secrets(cmd) => secrets::run(&cmd, g, &cwd()?).await?,
        Command::Backups(a) => backup::list(&a, g, &cwd()?).await?,
        Command::Backup(cmd) => backup::now(&cmd, g, &cwd()?).await?,
        Command::Restore(a) => restore::run(&a, g, &cwd()?).await?,
        Command::Deploy(a) => deploy::deploy(&a, g, &cwd()?).await?,
        Command::Rollback(a) => deploy::rollback(&a, g, &cwd()?).await?,
        Command::Releases(a) => releases::run(&a, g, &cwd()?).await?,
        Command::Lock(cmd) => lock::run(&cmd, g, &cwd()?).await?,
        Command::Run(a) => jobs::run_task(&a, g, &cwd()?).await?,
        Command::Jobs(a) => jobs::jobs(&a, g, &cwd()?).await?,
        Command::UpgradeHostd(a) => upgrade::run(&a, g, &cwd()?).await?,
        Command::Diff(a) => host_config::diff(&a, g, &cwd()?).await?,
        Command::Apply(a) => host_config::apply(&a, g, &cwd()?).await?,
        Command::Applies(a) => host_config::applies(&a, g, &cwd()?).await?,
        Command::Setup(a) => setup::run(&a, g, &cwd()?).await?,
        Command::Sandbox(cmd) => sandbox::run(cmd).await?,
        Command::Completions { shell } => completions(shell)?,
    })
}

/// The script on stdout, written in one piece.
fn completions(shell: clap_complete::Shell) -> Result<ExitCode, Error> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hostctl", &mut out);
    std::io::stdout()
        .lock()
        .write_all(&out)
        .map_err(Error::Output)?;
    Ok(ExitCode::SUCCESS)
}
