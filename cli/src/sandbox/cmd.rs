//! Running external tools (ip, mount, debootstrap, ssh-keygen, chroot, ...)
//! with errors that name the command and show the end of its stderr.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use super::SandboxError;

/// PATH for the tools we run and for commands inside a chroot.
pub(crate) const SANE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command with a printable form for error messages.
pub(crate) struct Cmd {
    inner: tokio::process::Command,
    shown: String,
}

impl Cmd {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        let program = program.as_ref();
        let mut inner = tokio::process::Command::new(program);
        inner.stdin(Stdio::null()).kill_on_drop(true);
        Cmd {
            inner,
            shown: program.to_string_lossy().into_owned(),
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        let arg = arg.as_ref();
        self.shown.push(' ');
        self.shown.push_str(&arg.to_string_lossy());
        self.inner.arg(arg);
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Start from an empty environment with a sane PATH and locale.
    pub(crate) fn clean_env(mut self) -> Self {
        self.inner
            .env_clear()
            .env("PATH", SANE_PATH)
            .env("LANG", "C.UTF-8");
        self
    }

    pub(crate) fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    async fn output(mut self, what: &str) -> Result<(Output, String), SandboxError> {
        let shown = self.shown;
        let out = self
            .inner
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| SandboxError::Command {
                what: what.to_owned(),
                command: shown.clone(),
                outcome: "could not be started".to_owned(),
                detail: format!(": {e}"),
            })?;
        Ok((out, shown))
    }

    /// Run to completion; fail unless it exits 0. Returns stdout.
    pub(crate) async fn run(self, what: &str) -> Result<String, SandboxError> {
        let (out, shown) = self.output(what).await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(command_failed(what, &shown, &out))
        }
    }

    /// Run to completion and return the raw output whatever the exit status.
    pub(crate) async fn run_unchecked(self, what: &str) -> Result<Output, SandboxError> {
        Ok(self.output(what).await?.0)
    }

    /// True when the command exits 0; output is discarded.
    pub(crate) async fn succeeds(self) -> bool {
        matches!(self.output("probe").await, Ok((out, _)) if out.status.success())
    }
}

pub(crate) fn command_failed(what: &str, shown: &str, out: &Output) -> SandboxError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    SandboxError::Command {
        what: what.to_owned(),
        command: shown.to_owned(),
        outcome: match out.status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_owned(),
        },
        detail: tail(&text, 12)
            .map(|t| format!(":\n{t}"))
            .unwrap_or_default(),
    }
}

/// The last `lines` non-empty lines of `text`, if any.
pub(crate) fn tail(text: &str, lines: usize) -> Option<String> {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if all.is_empty() {
        return None;
    }
    let start = all.len().saturating_sub(lines);
    Some(all[start..].join("\n"))
}

/// Find `tool` in PATH or the usual sbin directories.
pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(std::env::split_paths(SANE_PATH))
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fail with an install hint unless every `(tool, package)` is available.
pub(crate) fn require_tools(tools: &[(&'static str, &'static str)]) -> Result<(), SandboxError> {
    for &(tool, package) in tools {
        if which(tool).is_none() {
            return Err(SandboxError::MissingTool { tool, package });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_non_empty_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2).as_deref(), Some("b\nc"));
        assert_eq!(tail("\n \n", 3), None);
    }
}
