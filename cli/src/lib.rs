//! hostctl, the operator CLI for hosts running hostd. `main.rs` only parses
//! arguments, sets up logging and maps [`Error`] to an exit code.

pub mod args;
pub mod config;
pub mod logging;
pub mod sandbox;
pub mod status;
pub mod transport;

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use args::{Cli, Command};

/// Exit code for usage and configuration mistakes, as clap uses for bad flags.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Status(#[from] status::StatusError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("cannot determine the current directory")]
    CurrentDir(#[source] std::io::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// 2 for what the operator must fix in flags or hostctl.toml, 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Status(status::StatusError::Config(_)) => ExitCode::from(EXIT_USAGE),
            Self::Status(status::StatusError::Transport(_) | status::StatusError::Output(_))
            | Self::Sandbox(_)
            | Self::CurrentDir(_)
            | Self::Output(_) => ExitCode::FAILURE,
        }
    }

    /// A closed pipe (`hostctl status | head`) is not worth an error message.
    pub fn is_broken_pipe(&self) -> bool {
        let io = match self {
            Self::Output(e) | Self::Status(status::StatusError::Output(e)) => e,
            _ => return false,
        };
        io.kind() == std::io::ErrorKind::BrokenPipe
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Status(args) => {
            let cwd = std::env::current_dir().map_err(Error::CurrentDir)?;
            let settings = status::StatusSettings::resolve(&args, &cli.global, &cwd)
                .map_err(status::StatusError::from)?;
            Ok(status::run(settings).await?.into())
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
