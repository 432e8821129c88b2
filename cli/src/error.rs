//! The error of a whole run: each command's own error, and what `main`
//! asks of it (an exit code, a hint, whether only stdout went away).

use std::io;
use std::process::ExitCode;

use crate::exit::CommandError;
use crate::{
    backup, deploy, fleet, host_config, jobs, logs, restore, sandbox, secrets, service, setup,
    upgrade,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Read(#[from] fleet::ReadError),
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
    #[error(transparent)]
    HostConfig(#[from] host_config::HostConfigError),
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error("cannot determine the current directory")]
    CurrentDir(#[source] io::Error),
    #[error("cannot write the output")]
    Output(#[source] io::Error),
}

impl Error {
    fn command(&self) -> Option<&dyn CommandError> {
        match self {
            Self::Read(e) => Some(e),
            Self::Sandbox(e) => Some(e),
            Self::Service(e) => Some(e),
            Self::Logs(e) => Some(e),
            Self::Secrets(e) => Some(e),
            Self::Backup(e) => Some(e),
            Self::Restore(e) => Some(e),
            Self::Deploy(e) => Some(e),
            Self::Upgrade(e) => Some(e),
            Self::Jobs(e) => Some(e),
            Self::HostConfig(e) => Some(e),
            Self::Setup(e) => Some(e),
            Self::CurrentDir(_) | Self::Output(_) => None,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        self.command().map_or(ExitCode::FAILURE, |e| e.exit_code())
    }

    pub fn hint(&self) -> Option<String> {
        self.command().and_then(|e| e.hint())
    }

    /// A closed pipe (`hostctl status | head`) is not worth an error message.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Self::Output(e) => e.kind() == io::ErrorKind::BrokenPipe,
            other => other
                .command()
                .is_some_and(|e| e.failure().is_broken_pipe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::EXIT_USAGE;
    use crate::targets::TargetError;
    use crate::transport::TransportError;

    fn pipe(kind: io::ErrorKind) -> io::Error {
        io::Error::from(kind)
    }

    #[test]
    fn usage_exits_2_failures_1_and_a_closed_stdout_quietly() {
        let usage = Error::from(fleet::ReadError::Target(TargetError::SeveralHosts {
            environment: "x".into(),
            hosts: vec!["a".into(), "b".into()],
        }));
        assert_eq!(usage.exit_code(), ExitCode::from(EXIT_USAGE));
        let timeout = TransportError::Timeout {
            host: "a".into(),
            after: std::time::Duration::from_secs(1),
        };
        let unreachable = Error::from(fleet::ReadError::Transport(timeout));
        assert_eq!(unreachable.exit_code(), ExitCode::FAILURE);
        assert!(
            unreachable
                .hint()
                .is_some_and(|h| h.contains("slow or stuck"))
        );
        let closed = Error::from(deploy::DeployError::Output(pipe(io::ErrorKind::BrokenPipe)));
        assert!(closed.is_broken_pipe());
        let full = Error::from(deploy::DeployError::Output(pipe(
            io::ErrorKind::StorageFull,
        )));
        assert!(!full.is_broken_pipe());
        assert_eq!(full.exit_code(), ExitCode::FAILURE);
        assert!(Error::Output(pipe(io::ErrorKind::BrokenPipe)).is_broken_pipe());
    }
}
