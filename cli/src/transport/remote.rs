//! Arbitrary commands on a host through the same multiplexed ssh as the
//! control API, with stdout streamed line by line (`hostctl logs`).

use std::borrow::Cow;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::config::HostTarget;

use super::{SSH_FAILURE, Transport, TransportError, ssh_args, summarize_stderr};

/// `arg` as one word for the remote shell. ssh joins its remote argv with
/// spaces and hands that string to the login shell, so an unquoted
/// `2 hours ago` would become three words and `api@*.service` a glob over
/// the remote home directory. Single quotes are literal in sh, bash, zsh
/// and fish alike; a quote inside becomes `'\''`.
pub fn shell_quote(arg: &str) -> Cow<'_, str> {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,+@".contains(&b));
    if plain {
        Cow::Borrowed(arg)
    } else {
        Cow::Owned(format!("'{}'", arg.replace('\'', r"'\''")))
    }
}

/// `argv` as one remote command line, every word quoted as needed.
pub fn shell_join(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Transport {
    /// The ssh command running `argv` on `target`, each word shell-quoted so
    /// it arrives as that exact argument.
    pub fn remote_command(&self, target: &HostTarget, argv: &[&str]) -> Command {
        let line = shell_join(argv);
        let mut cmd = Command::new(&self.program);
        cmd.args(ssh_args(target, &self.control_dir, &[&line]))
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Ends the connection shared by every command to `target` (its
    /// ControlMaster), so the next one logs in afresh: after provisioning
    /// put the account in a group, only a new login has it. Nothing to end
    /// is no error.
    pub async fn end_shared_connection(&self, target: &HostTarget) {
        let mut cmd = Command::new(&self.program);
        cmd.args(["-O", "exit"])
            .args(ssh_args(target, &self.control_dir, &[]))
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status().await;
    }

    /// Starts `argv` on `target`; read its output with
    /// [`RemoteProcess::next_line`], then [`RemoteProcess::finish`].
    pub fn spawn_remote(
        &self,
        target: &HostTarget,
        argv: &[&str],
    ) -> Result<RemoteProcess, TransportError> {
        let mut command = self.remote_command(target, argv);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        tracing::debug!(host = target.name, command = ?command.as_std(), "spawning remote command");
        let spawn_err = |source| TransportError::Spawn {
            host: target.name.clone(),
            program: self.program.clone(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_err)?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(spawn_err(std::io::Error::other("child has no piped stdio")));
        };
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let stderr_task = tokio::spawn(super::client::collect_stderr(
            target.name.clone(),
            stderr,
            Arc::clone(&buffer),
        ));
        Ok(RemoteProcess {
            host: target.name.clone(),
            command: argv.join(" "),
            child,
            stdout: BufReader::new(stdout),
            stderr: buffer,
            stderr_task,
        })
    }
}

/// A command running on a host; killed if dropped before it ends.
pub struct RemoteProcess {
    host: String,
    /// For error messages: what the operator would type, unquoted.
    command: String,
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_task: JoinHandle<()>,
}

impl RemoteProcess {
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The next line of stdout without its newline, `None` at the end. A
    /// read error ends the output too; [`Self::finish`] then says why.
    pub async fn next_line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.stdout.read_until(b'\n', &mut line).await {
            Ok(0) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(line)
            }
            Err(e) => {
                tracing::debug!(host = self.host, error = %e, "reading remote stdout failed");
                None
            }
        }
    }

    /// Waits for the command to end. Ok carries what it said on stderr
    /// (summarised), which may be a warning worth showing.
    pub async fn finish(mut self) -> Result<String, TransportError> {
        let status = self.child.wait().await;
        // The child is gone, so stderr reaches EOF promptly.
        let _ = (&mut self.stderr_task).await;
        let stderr = {
            let buffer = self
                .stderr
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            summarize_stderr(&buffer)
        };
        let host = self.host;
        match status {
            Ok(s) if s.success() => Ok(stderr),
            Ok(s) if s.code() == Some(SSH_FAILURE) => {
                Err(TransportError::Unreachable { host, stderr })
            }
            Ok(s) => Err(TransportError::Command {
                host,
                command: self.command,
                exit: s.code(),
                stderr,
            }),
            Err(cause) => Err(TransportError::Unwaited {
                host,
                command: self.command,
                cause,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// What a POSIX shell makes of `line`: one output line per word.
    fn words_after_shell(line: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {line}"))
            .current_dir(std::env::temp_dir())
            .output()?;
        assert!(out.status.success(), "{out:?}");
        Ok(String::from_utf8(out.stdout)?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    #[test]
    fn quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("journalctl"), "journalctl");
        assert_eq!(shell_quote("-u"), "-u");
        assert_eq!(shell_quote("redis-server.service"), "redis-server.service");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("api@*.service"), "'api@*.service'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn every_argument_survives_the_remote_shell() -> Result<(), Box<dyn std::error::Error>> {
        let argv = [
            "--since",
            "2 hours ago",
            "-u",
            "api@*.service",
            "it's $HOME `id` \"x\" \\ ; | & > <",
            "",
            "*",
            "~",
            "line\nbreak",
        ];
        let got = words_after_shell(&shell_join(&argv))?;
        let expected: Vec<String> = argv
            .iter()
            .flat_map(|a| a.split('\n'))
            .map(str::to_owned)
            .collect();
        assert_eq!(got, expected);
        Ok(())
    }

    /// A fake ssh that runs the remote command line with sh, like sshd does.
    const FAKE_SSH: &str = r#"#!/bin/sh
while [ "$#" -gt 0 ]; do case "$1" in -o|-p|-i|-l) shift 2;; --) shift; break;; *) shift;; esac; done
exec sh -c "$*"
"#;

    #[tokio::test]
    async fn streams_lines_and_reports_failure() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("hostctl-remote-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let fake = dir.join("ssh");
        std::fs::write(&fake, FAKE_SSH)?;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
        let transport = Transport::with_program(&fake, dir.clone());
        let target = crate::config::Config::from_str(
            "[environments.x]\nhosts = [\"h\"]\n",
            std::path::Path::new("/p/hostctl.toml"),
        )?
        .environments
        .remove("x")
        .unwrap_or_default()
        .remove(0);

        let mut p = transport.spawn_remote(&target, &["printf", "%s\\n", "a b", "c'd"])?;
        let mut lines = Vec::new();
        while let Some(l) = p.next_line().await {
            lines.push(String::from_utf8(l)?);
        }
        p.finish().await?;
        assert_eq!(lines, ["a b", "c'd"]);

        let p = transport.spawn_remote(&target, &["sh", "-c", "echo nope >&2; exit 3"])?;
        let err = p.finish().await.err().ok_or("expected an error")?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(
            err.to_string(),
            "h: `sh -c echo nope >&2; exit 3` failed on the host (exit 3): nope"
        );
        Ok(())
    }
}
