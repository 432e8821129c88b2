//! `hostctl jobs run NAME`: the job's own unit started now, exactly as its
//! timer would, its journal lines streamed as they are written. The run is
//! recorded like a scheduled one, as `manual`.

use std::time::{Duration, Instant};

use hostd_api::{ActiveState, RunEvent};
use tokio::sync::mpsc;

use super::{Jobs, JobsError, UNIT_JOB_TIMEOUT, unit, units};
use crate::systemd::JobKind;

/// systemd's MESSAGE_IDs for "Deactivated successfully" and "Failed with
/// result": logged by PID 1 after the run's process has exited, so its
/// output is in the journal before them.
const UNIT_ENDED: [&str; 2] = [
    "7ad2d189f7e94e70a38c781354912448",
    "d9b373ed55a64feb8242e02dbe79a49c",
];
/// After the unit stopped, how long to wait for PID 1's closing message
/// (journald may still be writing the last lines).
const DRAIN: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

/// Marks the job as run by hand, refusing when it is already running.
pub(super) struct Claim {
    jobs: Jobs,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.jobs
            .manual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

impl Jobs {
    pub(super) async fn claim(&self, name: &str) -> Result<Claim, JobsError> {
        if !self.config.jobs.contains_key(name) {
            return Err(JobsError::Unknown {
                name: name.to_owned(),
                known: self.config.jobs.keys().cloned().collect(),
            });
        }
        let state = self
            .systemd
            .run_state(&unit(&units::service_unit(name))?)
            .await?;
        let running = matches!(
            state.active_state,
            ActiveState::Active | ActiveState::Activating
        );
        let mut manual = self.manual.lock().unwrap_or_else(|p| p.into_inner());
        if running || manual.contains(name) {
            return Err(JobsError::Running {
                name: name.to_owned(),
                since: super::status::rfc3339_usec(state.start_usec),
            });
        }
        manual.insert(name.to_owned());
        Ok(Claim {
            jobs: self.clone(),
            name: name.to_owned(),
        })
    }

    pub(super) async fn run_now(&self, claim: Claim, tx: mpsc::UnboundedSender<RunEvent>) {
        let started = Instant::now();
        let name = claim.name.clone();
        let finished = |result: String, exit_code, error| RunEvent::Finished {
            result,
            exit_code,
            seconds: started.elapsed().as_secs_f64(),
            error,
        };
        let error = match self.start_and_follow(&name, &tx).await {
            Ok(()) => None,
            Err(e) => Some(crate::health::error_chain(&e)),
        };
        self.wait_stopped(&name).await;
        let recorded = self.record_finished(&name, "manual").await;
        drop(claim);
        self.observe().await;
        let event = match recorded {
            Ok(Some(run)) => finished(run.result, run.exit_code, error),
            Ok(None) => finished("unknown".into(), None, error),
            Err(e) => finished("unknown".into(), None, Some(crate::health::error_chain(&e))),
        };
        let _ = tx.send(event);
    }

    /// The journal can show the end a moment before D-Bus does.
    async fn wait_stopped(&self, name: &str) {
        let Ok(service) = unit(&units::service_unit(name)) else {
            return;
        };
        let deadline = Instant::now() + DRAIN;
        while Instant::now() < deadline {
            match self.systemd.run_state(&service).await {
                Ok(s)
                    if matches!(
                        s.active_state,
                        ActiveState::Active | ActiveState::Activating | ActiveState::Deactivating
                    ) =>
                {
                    tokio::time::sleep(POLL).await
                }
                _ => return,
            }
        }
    }

    async fn start_and_follow(
        &self,
        name: &str,
        tx: &mpsc::UnboundedSender<RunEvent>,
    ) -> Result<(), JobsError> {
        let service = unit(&units::service_unit(name))?;
        tracing::info!(job = name, "starting job by hand");
        let _ = tx.send(RunEvent::Started {
            unit: service.to_string(),
        });
        // A command that cannot even start fails the start job: its state
        // still says how, for the record.
        self.systemd
            .job(JobKind::Start, &service, UNIT_JOB_TIMEOUT)
            .await?;
        let state = self.systemd.run_state(&service).await?;
        let timeout = self
            .config
            .jobs
            .get(name)
            .map_or(Duration::from_secs(3600), |j| j.timeout.0);
        let begun = Instant::now();
        let deadline = begun + timeout + UNIT_JOB_TIMEOUT;
        let mut cursor: Option<String> = None;
        let mut stopped: Option<Instant> = None;
        loop {
            let (entries, last) = read_journal(&state.invocation, cursor.as_deref()).await?;
            if last.is_some() {
                cursor = last;
            }
            let mut ended = false;
            for entry in entries {
                match entry {
                    Entry::Output(line) => {
                        let _ = tx.send(RunEvent::Output { line });
                    }
                    Entry::Ended => ended = true,
                    Entry::Other => {}
                }
            }
            if stopped.is_none() {
                let s = self.systemd.run_state(&service).await?;
                if !matches!(
                    s.active_state,
                    ActiveState::Active | ActiveState::Activating | ActiveState::Deactivating
                ) {
                    stopped = Some(Instant::now());
                }
            }
            let drained = stopped.is_some_and(|t| ended || t.elapsed() > DRAIN);
            if drained || Instant::now() > deadline {
                break;
            }
            // Quick at first (most jobs are short), then at an easy pace.
            let pause = if begun.elapsed() < Duration::from_secs(10) {
                POLL
            } else {
                POLL * 10
            };
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }
}

/// The journal entries of one invocation after `cursor`, and the cursor
/// of the last. journalctl without `--follow`: following needs inotify,
/// which hostd's confinement (ProtectKernelTunables=) leaves it without.
async fn read_journal(
    invocation: &str,
    cursor: Option<&str>,
) -> Result<(Vec<Entry>, Option<String>), JobsError> {
    let mut cmd = tokio::process::Command::new("journalctl");
    cmd.args(["--no-pager", "--output=json"]);
    if let Some(c) = cursor {
        cmd.arg(format!("--after-cursor={c}"));
    }
    let out = cmd
        .arg(format!("_SYSTEMD_INVOCATION_ID={invocation}"))
        .arg("+")
        .arg(format!("INVOCATION_ID={invocation}"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| JobsError::Journal(e.to_string()))?;
    if !out.status.success() {
        return Err(JobsError::Journal(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut last = None;
    let entries = text
        .lines()
        .map(|l| {
            if let Some(c) = cursor_of(l) {
                last = Some(c);
            }
            parse_entry(l)
        })
        .collect();
    Ok((entries, last))
}

fn cursor_of(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(v.get("__CURSOR")?.as_str()?.to_owned())
}

enum Entry {
    Output(String),
    Ended,
    Other,
}

/// One `journalctl --output=json` line. MESSAGE is a string, or an array
/// of bytes when it is not UTF-8.
fn parse_entry(line: &str) -> Entry {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return Entry::Other;
    };
    if v.get("MESSAGE_ID")
        .and_then(|m| m.as_str())
        .is_some_and(|id| UNIT_ENDED.contains(&id))
    {
        return Entry::Ended;
    }
    if v.get("_SYSTEMD_INVOCATION_ID").is_none() {
        return Entry::Other;
    }
    match v.get("MESSAGE") {
        Some(serde_json::Value::String(s)) => Entry::Output(s.clone()),
        Some(serde_json::Value::Array(bytes)) => {
            let raw: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            Entry::Output(String::from_utf8_lossy(&raw).into_owned())
        }
        _ => Entry::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_are_output_the_end_or_ignored() {
        let out = r#"{"_SYSTEMD_INVOCATION_ID":"ab","MESSAGE":"cleaned 3 rows"}"#;
        assert!(matches!(parse_entry(out), Entry::Output(s) if s == "cleaned 3 rows"));
        let bytes = r#"{"_SYSTEMD_INVOCATION_ID":"ab","MESSAGE":[104,105,255]}"#;
        assert!(matches!(parse_entry(bytes), Entry::Output(s) if s.starts_with("hi")));
        let end = r#"{"INVOCATION_ID":"ab","MESSAGE_ID":"d9b373ed55a64feb8242e02dbe79a49c","MESSAGE":"Failed with result 'exit-code'."}"#;
        assert!(matches!(parse_entry(end), Entry::Ended));
        let pid1 = r#"{"INVOCATION_ID":"ab","MESSAGE":"Started hostd job cleanup."}"#;
        assert!(matches!(parse_entry(pid1), Entry::Other));
        assert!(matches!(parse_entry("not json"), Entry::Other));
    }
}
