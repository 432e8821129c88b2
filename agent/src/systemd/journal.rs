//! The output of one run of a unit, read from the journal as it is written:
//! how `hostctl jobs run` and `hostctl run` (tasks, deploy hooks) stream a
//! command's output while the journal keeps it for `hostctl logs`.
//!
//! journalctl is asked again and again from a cursor rather than followed:
//! `--follow` needs inotify, which hostd's confinement
//! (`ProtectKernelTunables=`) leaves it without.

use std::time::{Duration, Instant};

/// systemd's MESSAGE_IDs for "Deactivated successfully" and "Failed with
/// result" (with UNIT_RESULT): logged by PID 1 after the run's process has
/// exited, so its output is in the journal before them.
const UNIT_SUCCEEDED: &str = "7ad2d189f7e94e70a38c781354912448";
const UNIT_FAILED: &str = "d9b373ed55a64feb8242e02dbe79a49c";
/// "Finished …" / "Failed to start …" (JOB_TYPE, JOB_RESULT): for a
/// oneshot that remains active after its run, the only word of its end.
const JOB_DONE: &str = "39f53479d3a045ac8e11786248231fbf";
/// "Main process exited, code=…, status=…" (EXIT_CODE, EXIT_STATUS).
const PROCESS_EXITED: &str = "98e322203f7a4ed290d09fe03c09fe15";
/// After the run stopped, how long to wait for PID 1's closing message
/// (journald may still be writing the last lines).
const DRAIN: Duration = Duration::from_secs(3);
/// After PID 1's closing message, how long to go on reading: journald
/// takes the command's output (a stream socket) and PID 1's messages (a
/// datagram socket) in whatever order they wake it, so the last lines can
/// land just after the closing message.
const AFTER_END: Duration = Duration::from_millis(500);
pub const POLL: Duration = Duration::from_millis(100);
/// Longer output lines are cut: a command printing a blob must not flood
/// hostctl.
const MAX_LINE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot run journalctl")]
    Spawn(#[source] std::io::Error),
    #[error("journalctl failed: {0}")]
    Failed(String),
}

/// Which run: a unit's, by its name (unique to a transient run; for a
/// lasting unit, read [`RunOutput::after`] a cursor taken before the
/// start). Not by InvocationID: journald learns it from the process's
/// cgroup, which a short-lived command has already left, so its lines can
/// come without one.
pub enum Run<'a> {
    Unit(&'a str),
}

/// The newest entry's cursor: what a run started afterwards comes after.
pub async fn current_cursor() -> Result<Option<String>, JournalError> {
    Ok(journal_json(&["--lines=1".to_owned()])
        .await?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some(v.get("__CURSOR")?.as_str()?.to_owned()))
        .next_back())
}

/// `journalctl --output=json ARGS`: its output, one entry a line.
async fn journal_json(args: &[String]) -> Result<String, JournalError> {
    let out = tokio::process::Command::new("journalctl")
        .args(["--no-pager", "--output=json"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(JournalError::Spawn)?;
    if !out.status.success() {
        return Err(JournalError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How a run ended, as PID 1 logged it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ended {
    /// systemd's word: `success`, `exit-code`, `timeout`, `signal`...
    pub result: String,
    /// The exit status, when the process exited by itself.
    pub exit_code: Option<i32>,
}

/// Reads one run's lines in order, each once.
pub struct RunOutput {
    matches: [String; 2],
    cursor: Option<String>,
    ended: Option<Ended>,
    /// When `ended` was first seen.
    ended_at: Option<Instant>,
    exit_code: Option<i32>,
    stopped: Option<Instant>,
    /// A `Type=oneshot` unit: its start job ends when its run does.
    oneshot: bool,
}

impl RunOutput {
    pub fn new(run: Run<'_>) -> Self {
        // The command's own lines carry the `_`-prefixed trusted fields;
        // PID 1's messages about the unit the plain ones.
        let Run::Unit(u) = run;
        let matches = [format!("_SYSTEMD_UNIT={u}"), format!("UNIT={u}")];
        Self {
            matches,
            cursor: None,
            ended: None,
            ended_at: None,
            exit_code: None,
            stopped: None,
            oneshot: false,
        }
    }

    /// Only entries after `cursor` (from [`current_cursor`]).
    pub fn after(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    /// The run is a `Type=oneshot` unit's, whose start job lasts the run
    /// (and which logs no "Deactivated" when it remains active after it).
    pub fn oneshot(mut self) -> Self {
        self.oneshot = true;
        self
    }

    /// Lines written since the last call.
    pub async fn next_lines(&mut self) -> Result<Vec<String>, JournalError> {
        let mut args = Vec::new();
        if let Some(c) = &self.cursor {
            args.push(format!("--after-cursor={c}"));
        }
        args.extend([
            self.matches[0].clone(),
            "+".to_owned(),
            self.matches[1].clone(),
        ]);
        let text = journal_json(&args).await?;
        let mut lines = Vec::new();
        for l in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            if let Some(c) = v.get("__CURSOR").and_then(|c| c.as_str()) {
                self.cursor = Some(c.to_owned());
            }
            match parse_entry(&v) {
                Entry::Output(text) => lines.push(text),
                Entry::Exited(code) => self.exit_code = code,
                Entry::StartDone(done) if self.oneshot => {
                    let (result, exit_code) = if done {
                        ("success".to_owned(), Some(0))
                    } else {
                        ("failed".to_owned(), self.exit_code)
                    };
                    // "Failed with result" may still come, more precise.
                    self.ended.get_or_insert(Ended { result, exit_code });
                }
                Entry::StartDone(_) => {}
                Entry::Ended(result) => {
                    let exit_code = if result == "success" {
                        Some(0)
                    } else {
                        self.exit_code
                    };
                    self.ended = Some(Ended { result, exit_code });
                }
                Entry::Other => {}
            }
        }
        if self.ended.is_some() {
            self.ended_at.get_or_insert_with(Instant::now);
        }
        Ok(lines)
    }

    /// The caller saw the run's process end (its unit inactive, or
    /// `systemd-run --wait` returned).
    pub fn stopped(&mut self) {
        self.stopped.get_or_insert_with(Instant::now);
    }

    /// Every line is in: the run stopped and PID 1 logged its end a moment
    /// ago, or journald had a while to catch up.
    pub fn complete(&self) -> bool {
        self.stopped.is_some_and(|t| {
            self.ended_at.is_some_and(|e| e.elapsed() > AFTER_END) || t.elapsed() > DRAIN
        })
    }

    /// The end PID 1 logged, once it has.
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref()
    }
}

enum Entry {
    Output(String),
    /// The exit status if the process exited (None: killed).
    Exited(Option<i32>),
    /// The unit's result.
    Ended(String),
    /// The start job ended: done or not.
    StartDone(bool),
    Other,
}

/// One `journalctl --output=json` entry. MESSAGE is a string, or an array
/// of bytes when it is not UTF-8.
fn parse_entry(v: &serde_json::Value) -> Entry {
    let field = |k: &str| v.get(k).and_then(|f| f.as_str());
    match field("MESSAGE_ID") {
        Some(UNIT_SUCCEEDED) => return Entry::Ended("success".into()),
        Some(UNIT_FAILED) => {
            return Entry::Ended(field("UNIT_RESULT").unwrap_or("failed").to_owned());
        }
        Some(JOB_DONE) if field("JOB_TYPE") == Some("start") => {
            return Entry::StartDone(field("JOB_RESULT") == Some("done"));
        }
        Some(PROCESS_EXITED) => {
            let code = (field("EXIT_CODE") == Some("exited"))
                .then(|| field("EXIT_STATUS").and_then(|s| s.parse().ok()))
                .flatten();
            return Entry::Exited(code);
        }
        _ => {}
    }
    if v.get("_SYSTEMD_INVOCATION_ID").is_none() && v.get("_SYSTEMD_UNIT").is_none() {
        return Entry::Other;
    }
    // PID 1's own messages carry _SYSTEMD_UNIT=init.scope: not output.
    if v.get("_PID").and_then(|p| p.as_str()) == Some("1") {
        return Entry::Other;
    }
    let mut text = match v.get("MESSAGE") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(bytes)) => {
            let raw: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            String::from_utf8_lossy(&raw).into_owned()
        }
        _ => return Entry::Other,
    };
    if text.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    Entry::Output(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Entry {
        parse_entry(&serde_json::from_str(json).unwrap_or_default())
    }

    #[test]
    fn journal_entries_are_output_the_end_or_ignored() {
        let out = r#"{"_SYSTEMD_INVOCATION_ID":"ab","_PID":"140","MESSAGE":"cleaned 3 rows"}"#;
        assert!(matches!(entry(out), Entry::Output(s) if s == "cleaned 3 rows"));
        let bytes = r#"{"_SYSTEMD_UNIT":"x.service","MESSAGE":[104,105,255]}"#;
        assert!(matches!(entry(bytes), Entry::Output(s) if s.starts_with("hi")));
        let end = r#"{"INVOCATION_ID":"ab","_PID":"1","_SYSTEMD_UNIT":"init.scope","MESSAGE_ID":"d9b373ed55a64feb8242e02dbe79a49c","UNIT_RESULT":"timeout","MESSAGE":"Failed with result 'timeout'."}"#;
        assert!(matches!(entry(end), Entry::Ended(r) if r == "timeout"));
        let exited = r#"{"_PID":"1","MESSAGE_ID":"98e322203f7a4ed290d09fe03c09fe15","EXIT_CODE":"exited","EXIT_STATUS":"4"}"#;
        assert!(matches!(entry(exited), Entry::Exited(Some(4))));
        let killed = r#"{"_PID":"1","MESSAGE_ID":"98e322203f7a4ed290d09fe03c09fe15","EXIT_CODE":"killed","EXIT_STATUS":"TERM"}"#;
        assert!(matches!(entry(killed), Entry::Exited(None)));
        let pid1 = r#"{"UNIT":"x.service","_PID":"1","_SYSTEMD_UNIT":"init.scope","MESSAGE":"Started x."}"#;
        assert!(matches!(entry(pid1), Entry::Other));
        let long = format!(
            r#"{{"_SYSTEMD_UNIT":"x.service","MESSAGE":"{}"}}"#,
            "é".repeat(4000)
        );
        assert!(matches!(entry(&long), Entry::Output(s) if s.len() <= MAX_LINE));
    }
}
