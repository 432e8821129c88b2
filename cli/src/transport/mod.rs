//! Reaching hostd's control API on a host: system `ssh` runs
//! `hostd dial-stdio`, and HTTP/1.1 flows over the child's stdin/stdout.
//! Commands reuse [`Transport::connect`] and [`HostClient`]
//! ([`HostClient::stream`] for answers reported as they go, like a
//! restore's, and [`Transport::follow`] to read one to its end);
//! [`Transport::spawn_remote`] runs other commands there.

mod client;
mod lines;
mod remote;
mod ssh;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use hyper::Method;
use hyper::body::Bytes;
use serde::de::DeserializeOwned;

pub use client::{HostClient, RequestBody};
pub use lines::{JsonLines, StreamStop};
pub use remote::{RemoteProcess, shell_join, shell_quote};
pub use ssh::{control_dir, ssh_args};

use crate::config::HostTarget;

/// Exit status ssh itself uses for its own failures (connect, auth, host
/// key); anything else is the remote command's.
const SSH_FAILURE: i32 = 255;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot use {} for ssh control sockets: {problem}", path.display())]
    RuntimeDir {
        path: PathBuf,
        problem: RuntimeDirProblem,
    },
    #[error(
        "{host}: cannot run {program:?}; is the OpenSSH client installed (apt install openssh-client)?"
    )]
    Spawn {
        host: String,
        program: OsString,
        #[source]
        source: std::io::Error,
    },
    #[error("{host}: ssh failed{}", tail(stderr))]
    Unreachable { host: String, stderr: String },
    #[error("{host}: `{command}` on the host failed ({}){}", exit_text(*exit), tail(stderr))]
    Remote {
        host: String,
        command: String,
        exit: Option<i32>,
        stderr: String,
    },
    /// A command other than hostd's failed (`journalctl` for logs).
    #[error("{host}: `{command}` failed on the host ({}){}", exit_text(*exit), tail(stderr))]
    Command {
        host: String,
        command: String,
        exit: Option<i32>,
        stderr: String,
    },
    /// ssh ran the command but could not be waited for; the message is
    /// the one a command without an exit status gives.
    #[error(
        "{host}: `{command}` failed on the host ({}): cannot wait for ssh: {cause}",
        exit_text(None)
    )]
    Unwaited {
        host: String,
        command: String,
        cause: std::io::Error,
    },
    #[error("{host}: the HTTP exchange with hostd broke off{}", tail(stderr))]
    Protocol {
        host: String,
        stderr: String,
        #[source]
        source: hyper::Error,
    },
    /// A streamed answer broke off after hostd had accepted the request.
    #[error(
        "{host}: the connection dropped while hostd was answering {path}{}",
        tail(stderr)
    )]
    Dropped {
        host: String,
        path: String,
        stderr: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{host}: a line of hostd's answer to {path} is longer than {limit} bytes")]
    LineTooLong {
        host: String,
        path: String,
        limit: usize,
    },
    #[error("{host}: cannot build a request for {path:?}")]
    InvalidRequest {
        host: String,
        path: String,
        #[source]
        source: hyper::http::Error,
    },
    #[error("{host}: hostd answered {status} to {path}: {message}")]
    Api {
        host: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error(
        "{host}: cannot decode hostd's answer to {path}; are hostctl and hostd versions compatible?"
    )]
    Decode {
        host: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{host}: no answer within {}", humantime::format_duration(*after))]
    Timeout { host: String, after: Duration },
}

/// What is wrong with the directory for ssh's control sockets; part of
/// the message, so no source of the error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirProblem {
    #[error("cannot create it: {0}")]
    Create(std::io::Error),
    #[error("cannot inspect it: {0}")]
    Inspect(std::io::Error),
    #[error("it exists and is not a directory; remove it")]
    NotADirectory,
    #[error("it belongs to uid {0}, not to you; remove it or set XDG_RUNTIME_DIR")]
    NotOurs(u32),
    #[error("cannot make it private (chmod 700): {0}")]
    Private(std::io::Error),
}

fn tail(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

fn exit_text(exit: Option<i32>) -> String {
    exit.map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}"))
}

impl TransportError {
    /// What to try next, for the operator reading this at 3 a.m.
    pub fn hint(&self) -> Option<String> {
        let has = |s: &str, needles: &[&str]| needles.iter().any(|n| s.contains(n));
        match self {
            Self::Unreachable { stderr, .. } => Some(
                if has(stderr, &["Host key verification failed", "HOST IDENTIFICATION HAS CHANGED"]) {
                    "the host key is unknown or changed: verify it, then fix known_hosts (known_hosts_file in hostctl.toml, else ~/.ssh/known_hosts)"
                } else if has(stderr, &["Permission denied"]) {
                    "authentication failed: check user and identity_file in hostctl.toml, or load the key with ssh-add"
                } else if has(stderr, &["Could not resolve hostname"]) {
                    "check the address; a name without a [hosts.NAME] table is handed to ssh as is (~/.ssh/config aliases)"
                } else {
                    "is the host up and sshd listening? check the address and port, and try `ssh -v` by hand"
                }
                .into(),
            ),
            Self::Remote { exit: Some(127), .. } => {
                Some("hostd is not installed at hostd_path on that host ([ssh] hostd_path in hostctl.toml)".into())
            }
            Self::Remote { .. } => Some("is hostd running there? on the host: systemctl status hostd".into()),
            Self::Timeout { .. } => Some("the host or hostd is slow or stuck; try `ssh HOST hostd --version` by hand".into()),
            Self::Decode { .. } | Self::LineTooLong { .. } => Some("upgrade hostctl or hostd so both speak the same API".into()),
            Self::Dropped { .. } => Some("hostd carries on by itself with what it had started: `hostctl status` shows the host as it is now".into()),
            Self::RuntimeDir { .. } | Self::Command { .. } | Self::Unwaited { .. } | Self::Spawn { .. } | Self::InvalidRequest { .. } | Self::Protocol { .. } | Self::Api { .. } => None,
        }
    }
}

/// The last few lines of ssh's stderr that say something: ssh prints
/// warnings first and the reason it gave up last.
pub fn summarize_stderr(raw: &[u8]) -> String {
    const KEEP: usize = 3;
    let text = String::from_utf8_lossy(raw);
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').trim())
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect();
    lines[lines.len().saturating_sub(KEEP)..].join(" / ")
}

/// Opens [`HostClient`]s to hosts through the system ssh.
#[derive(Debug, Clone)]
pub struct Transport {
    program: OsString,
    control_dir: PathBuf,
    envs: Vec<(OsString, OsString)>,
}

impl Transport {
    /// The system `ssh`, with control sockets in [`control_dir`].
    pub fn system() -> Result<Self, TransportError> {
        Ok(Self::with_program("ssh", control_dir()?))
    }

    /// Another program taking ssh's arguments: a wrapper, or a fake in tests.
    pub fn with_program(program: impl Into<OsString>, control_dir: PathBuf) -> Self {
        Self {
            program: program.into(),
            control_dir,
            envs: Vec::new(),
        }
    }

    /// Sets an environment variable for every spawned transport process.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The command that runs `hostd dial-stdio` on `target`.
    pub fn command(&self, target: &HostTarget) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(ssh_args(
            target,
            &self.control_dir,
            &[&target.hostd_path, "dial-stdio"],
        ))
        .envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub async fn connect(&self, target: &HostTarget) -> Result<HostClient, TransportError> {
        let remote = format!("{} dial-stdio", target.hostd_path);
        HostClient::spawn(&target.name, &remote, self.command(target)).await
    }

    /// One request on its own connection, its JSON answer decoded as `T`.
    /// `timeout` bounds all of it (ssh connect included), because a stuck
    /// ssh is as much a hang to the operator as a slow hostd.
    pub async fn call<T: DeserializeOwned>(
        &self,
        target: &HostTarget,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<T, TransportError> {
        let exchange = async {
            let mut client = self.connect(target).await?;
            let answer = client.request(method, path, body).await;
            client.close().await;
            let answer = answer?;
            serde_json::from_slice::<T>(&answer).map_err(|source| TransportError::Decode {
                host: target.name.clone(),
                path: path.to_owned(),
                source,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout {
                host: target.name.clone(),
                after: timeout,
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_summary_keeps_the_last_meaningful_lines() {
        let raw =
            b"Warning: Permanently added '10.0.0.1' (ED25519) to the list of known hosts.\r\n\n\
            one\ntwo\nthree\nssh: connect to host 10.231.0.250 port 22: Connection timed out\r\n\n";
        assert_eq!(
            summarize_stderr(raw),
            "two / three / ssh: connect to host 10.231.0.250 port 22: Connection timed out"
        );
        assert_eq!(summarize_stderr(b""), "");
    }

    #[test]
    fn hints_follow_ssh_reasons() {
        let e = |stderr: &str| TransportError::Unreachable {
            host: "a".into(),
            stderr: stderr.into(),
        };
        let hint = |e: TransportError| e.hint().unwrap_or_default();
        assert!(hint(e("admin@h: Permission denied (publickey).")).contains("identity_file"));
        assert!(hint(e("Host key verification failed.")).contains("known_hosts"));
        assert!(hint(e("Connection timed out")).contains("sshd"));
        let remote = TransportError::Remote {
            host: "a".into(),
            command: "hostd dial-stdio".into(),
            exit: Some(127),
            stderr: "bash: hostd: command not found".into(),
        };
        assert!(hint(remote).contains("hostd_path"));
    }
}
