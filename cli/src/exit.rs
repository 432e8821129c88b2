//! What a command's error tells `main`: how the command failed, which
//! decides the exit code and whether a closed stdout is worth a word, and
//! what to try next.

use std::io;
use std::process::ExitCode;

use crate::transport::TransportError;

/// Exit code for usage and configuration mistakes, as clap uses for bad flags.
pub const EXIT_USAGE: u8 = 2;

/// How a command failed, as far as `main` cares.
#[derive(Debug)]
pub enum Failure<'a> {
    /// The operator must fix the command or hostctl.toml: exit 2.
    Usage,
    /// Something went wrong: exit 1.
    Failed,
    /// Reaching a host went wrong: exit 1, with the transport's hint.
    Transport(&'a TransportError),
    /// Writing the output went wrong: exit 1, or nothing for a closed pipe.
    Output(&'a io::Error),
}

impl Failure<'_> {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage => ExitCode::from(EXIT_USAGE),
            Self::Failed | Self::Transport(_) | Self::Output(_) => ExitCode::FAILURE,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Transport(e) => e.hint(),
            Self::Usage | Self::Failed | Self::Output(_) => None,
        }
    }

    /// `hostctl status | head`: stdout went away, which is no failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Every command's error.
pub trait CommandError: std::error::Error {
    fn failure(&self) -> Failure<'_>;

    fn exit_code(&self) -> ExitCode {
        self.failure().exit_code()
    }

    /// What to try next, shown under the error: the transport's hint
    /// unless the command knows better.
    fn hint(&self) -> Option<String> {
        self.failure().hint()
    }
}
