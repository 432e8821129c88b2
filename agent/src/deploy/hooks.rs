//! Deploy hooks (`pre_switch`, `post_deploy`) and tasks (`migrate`, run
//! before a switch or by `hostctl run`): a shell command run on the host as
//! a transient systemd service with the app's user, environment and
//! credentials ([`ExecContext`]), in a release's directory. systemd
//! enforces the time limit; the output goes to the journal (so `hostctl
//! logs` and journalctl keep it) and comes back from there line by line.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::systemd::ExecContext;
use crate::systemd::journal::{POLL, Run, RunOutput};

/// Lines of a failed hook's output repeated in its error.
const TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("cannot run systemd-run for the {phase} hook")]
    Spawn {
        phase: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the output of the {phase} hook")]
    Journal {
        phase: String,
        #[source]
        source: crate::systemd::journal::JournalError,
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

/// Runs `hook` on `host`; each output line goes to `line`. A non-zero end
/// is an error carrying the last lines.
pub async fn run<H: super::DeployHost>(
    host: &H,
    hook: &Hook<'_>,
    mut line: impl FnMut(String) + Send,
) -> Result<(), HookError> {
    let mut tail = std::collections::VecDeque::new();
    let exit = host
        .run_to_end(hook, &mut |text: String| {
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
        phase: hook.phase.to_owned(),
        command: hook.command.to_owned(),
        status: exit.describe(),
        tail: Vec::from(tail).join("\n"),
    })
}

/// Hooks of one hostd run get distinct unit names even when two run at once
/// (a deploy's task and `hostctl run` of another service).
static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// How a hook's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// systemd's word for it: `success`, `exit-code`, `timeout`, `signal`...
    pub result: String,
    /// The exit status, when the command exited by itself.
    pub code: Option<i32>,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.result == "success"
    }

    pub fn describe(&self) -> String {
        match (self.result.as_str(), self.code) {
            ("exit-code", Some(c)) => format!("exit status {c}"),
            ("timeout", _) => "timed out".into(),
            (other, _) => other.to_owned(),
        }
    }

    /// From systemd-run's exit status alone, when the journal did not say
    /// (it passes on the command's status; 1 also for other failures).
    fn from_status(status: std::process::ExitStatus) -> Self {
        match status.code() {
            Some(0) => Self {
                result: "success".into(),
                code: Some(0),
            },
            Some(c) => Self {
                result: "exit-code".into(),
                code: Some(c),
            },
            None => Self {
                result: "signal".into(),
                code: None,
            },
        }
    }
}

/// A fresh transient unit name for a hook of `service`; `slug` is one word
/// of a-z, 0-9 and - (`pre-switch`, `task-migrate`).
/// The name is also how its output is found in the journal, so it is
/// never reused: a counter for this hostd, a random part for the others
/// (process IDs repeat from boot to boot).
pub fn unit_name(service: &str, slug: &str) -> String {
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let random = crate::random_u64();
    format!("hostd-hook-{service}-{slug}-{random:016x}-{n}.service")
}

impl Hook<'_> {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--quiet".to_owned(),
            "--wait".into(),
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
            "--property".into(),
            crate::units::DENY_INSTANCE_METADATA.into(),
            // A core holds the secrets the hook was given.
            "--property".into(),
            "LimitCORE=0".into(),
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

    /// Runs the hook to its end, whatever its exit status; each output
    /// line goes to `line`.
    pub async fn run_to_end(
        &self,
        line: &mut (dyn FnMut(String) + Send),
    ) -> Result<Exit, HookError> {
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
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        let journal_err = |source| HookError::Journal {
            phase: self.phase.to_owned(),
            source,
        };
        let mut output = RunOutput::new(Run::Unit(&self.unit));
        let mut status = None;
        loop {
            for text in output.next_lines().await.map_err(journal_err)? {
                line(text);
            }
            if status.is_none()
                && let Some(s) = child.try_wait().map_err(spawn_err)?
            {
                status = Some(s);
                output.stopped();
            }
            if output.complete() {
                break;
            }
            // Quick at first (most hooks are short), then at an easy pace.
            let pause = if started.elapsed() < Duration::from_secs(10) {
                POLL
            } else {
                POLL * 10
            };
            tokio::time::sleep(pause).await;
        }
        // systemd-run's own complaints (a property it refused), if any.
        let mut said = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut err, &mut said).await;
        }
        if !said.trim().is_empty() {
            for l in said.lines() {
                line(l.to_owned());
            }
        }
        let status = match status {
            Some(s) => s,
            None => child.wait().await.map_err(spawn_err)?,
        };
        // PID 1's account is exact (systemd-run says 1 for a timeout, and
        // may miss the status of a unit collected at once).
        Ok(match output.ended() {
            Some(e) => Exit {
                result: e.result.clone(),
                code: e.exit_code,
            },
            None => Exit::from_status(status),
        })
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
        assert!(
            joined.contains("--property IPAddressDeny=169.254.169.254 fd00:ec2::254"),
            "{joined}"
        );
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
