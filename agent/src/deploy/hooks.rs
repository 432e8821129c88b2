//! Deploy hooks (`pre_switch`, `post_deploy`) and tasks (`migrate`, run
//! before a switch or by `hostctl run`): a shell command run on the host as
//! a transient systemd service with the app's user, environment and
//! credentials ([`ExecContext`]), in a release's directory. systemd
//! enforces the time limit; the output comes back line by line.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::systemd::ExecContext;

/// Lines of a failed hook's output repeated in its error.
const TAIL_LINES: usize = 20;
/// Longer output lines are cut: a hook printing a blob must not flood hostctl.
const MAX_LINE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("cannot run systemd-run for the {phase} hook")]
    Spawn {
        phase: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the {phase} hook `{command}` failed ({status}); its last output:\n{tail}")]
    Failed {
        phase: String,
        command: String,
        status: String,
        tail: String,
    },
}

pub struct Hook<'a> {
    /// `pre_switch`, `post_deploy` or `task migrate`: for messages.
    pub phase: &'a str,
    /// The transient unit: see [`unit_name`].
    pub unit: String,
    pub command: &'a str,
    pub service: &'a str,
    pub version: &'a str,
    pub release_dir: &'a Path,
    pub context: &'a ExecContext,
    pub timeout: Duration,
}

/// Hooks of one hostd run get distinct unit names even when two run at once
/// (a deploy's task and `hostctl run` of another service).
static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// How a hook's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// systemd-run passes on the command's exit status; 255 for a command
    /// killed by a signal, 1 for other failures (a timeout).
    pub code: Option<i32>,
    pub timed_out: bool,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// systemd's word for it, as a job's `Result=` would say.
    pub fn result(&self) -> &'static str {
        match self.code {
            Some(0) => "success",
            _ if self.timed_out => "timeout",
            Some(255) | None => "signal",
            Some(_) => "exit-code",
        }
    }

    fn describe(&self) -> String {
        match self.code {
            _ if self.timed_out => "timed out".into(),
            Some(c) => format!("exit status {c}"),
            None => "killed".into(),
        }
    }
}

/// A fresh transient unit name for a hook of `service`; `slug` is one word
/// of a-z, 0-9 and - (`pre-switch`, `task-migrate`).
pub fn unit_name(service: &str, slug: &str) -> String {
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("hostd-hook-{service}-{slug}-{}-{n}", std::process::id())
}

impl Hook<'_> {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--quiet".to_owned(),
            "--wait".into(),
            "--pipe".into(),
            "--collect".into(),
            "--service-type=exec".into(),
            format!("--unit={}", self.unit),
            format!(
                "--description=hostd {} hook of {}",
                self.phase, self.service
            ),
            "--property".into(),
            format!("RuntimeMaxSec={}", self.timeout.as_secs().max(1)),
            "--property".into(),
            format!("WorkingDirectory={}", self.release_dir.display()),
        ];
        for p in self.context.properties() {
            args.push("--property".into());
            args.push(p);
        }
        args.push(format!("--setenv=HOSTD_RELEASE={}", self.version));
        args.push(format!(
            "--setenv=HOSTD_RELEASE_DIR={}",
            self.release_dir.display()
        ));
        args.extend(["--".into(), "/bin/sh".into(), "-c".into()]);
        args.push(self.command.to_owned());
        args
    }

    /// Runs the hook; each output line goes to `line`. A non-zero end is
    /// an error carrying the last lines.
    pub async fn run(&self, mut line: impl FnMut(String)) -> Result<(), HookError> {
        let mut tail = std::collections::VecDeque::new();
        let exit = self
            .run_to_end(|text| {
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text.clone());
                line(text);
            })
            .await?;
        if exit.success() {
            return Ok(());
        }
        Err(HookError::Failed {
            phase: self.phase.to_owned(),
            command: self.command.to_owned(),
            status: exit.describe(),
            tail: Vec::from(tail).join("\n"),
        })
    }

    /// Runs the hook to its end, whatever its exit status; each output
    /// line goes to `line`.
    pub async fn run_to_end(&self, mut line: impl FnMut(String)) -> Result<Exit, HookError> {
        tracing::info!(
            phase = self.phase,
            command = self.command,
            "running deploy hook"
        );
        let started = std::time::Instant::now();
        let spawn_err = |source| HookError::Spawn {
            phase: self.phase.to_owned(),
            source,
        };
        let mut child = tokio::process::Command::new("systemd-run")
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        let mut out = child.stdout.take().map(|o| BufReader::new(o).lines());
        let mut err = child.stderr.take().map(|e| BufReader::new(e).lines());
        // Both streams to their ends (systemd bounds the run), interleaved
        // as they come.
        while out.is_some() || err.is_some() {
            let next = tokio::select! {
                l = next_line(&mut out), if out.is_some() => l.ok_or(true),
                l = next_line(&mut err), if err.is_some() => l.ok_or(false),
            };
            match next {
                Ok(mut text) => {
                    if text.len() > MAX_LINE {
                        let mut cut = MAX_LINE;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut);
                    }
                    line(text);
                }
                Err(true) => out = None,
                Err(false) => err = None,
            }
        }
        let status = child.wait().await.map_err(spawn_err)?;
        Ok(Exit {
            code: status.code(),
            // systemd stops the unit at RuntimeMaxSec; systemd-run then
            // says 1, which a command's own `exit 1` also says.
            timed_out: !status.success() && started.elapsed() >= self.timeout,
        })
    }
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut Option<tokio::io::Lines<R>>,
) -> Option<String> {
    match lines.as_mut() {
        Some(l) => l.next_line().await.ok().flatten(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_runs_in_the_release_with_the_services_context() {
        let context = ExecContext {
            user: "api".into(),
            ..ExecContext::default()
        };
        let hook = Hook {
            phase: "pre_switch",
            unit: unit_name("api", "pre-switch"),
            command: "bin/migrate --all",
            service: "api",
            version: "v2",
            release_dir: Path::new("/srv/api/releases/v2"),
            context: &context,
            timeout: Duration::from_secs(600),
        };
        let args = hook.args();
        let joined = args.join(" ");
        assert!(joined.contains("--property RuntimeMaxSec=600"), "{joined}");
        assert!(joined.contains("--property WorkingDirectory=/srv/api/releases/v2"));
        assert!(joined.contains("--property User=api"));
        assert!(joined.contains("--setenv=HOSTD_RELEASE=v2"));
        assert!(
            args[4..]
                .iter()
                .any(|a| a.starts_with("--unit=hostd-hook-api-pre-switch-"))
        );
        assert_ne!(
            unit_name("api", "pre-switch"),
            unit_name("api", "pre-switch"),
            "two runs of one hook get distinct unit names"
        );
        // The command is one argument after `--`: nothing parses it but sh.
        assert_eq!(
            &args[args.len() - 4..],
            ["--", "/bin/sh", "-c", "bin/migrate --all"]
        );
    }
}
