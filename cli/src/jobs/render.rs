//! Output of `run`, `jobs run` and `jobs`. A run's output lines are the
//! data (stdout); how it started and ended are hostctl's words (stderr).
//! Times are shown as hostd sends them (RFC 3339, UTC). Styles are stripped
//! by anstream when not a terminal or NO_COLOR is set.

use std::io::Write;

use hostd_api::{HealthStatus, JobStatus, JobsList, RunEvent};

use super::{Finished, RunSettings};
use crate::fleet::Answer;
use crate::output::{self, BOLD, DIM, GREEN, RED, YELLOW, between, columns_with};

/// One event of a run: output lines on `out` as they come (flushed, so a
/// pipe sees them now), the unit it runs as on `err`; `finished` is left
/// to [`finished`].
pub(super) fn event(
    out: &mut impl Write,
    err: &mut impl Write,
    s: &RunSettings,
    e: &RunEvent,
) -> std::io::Result<()> {
    if s.json {
        return output::json_line(out, e);
    }
    let host = &s.target.name;
    match e {
        RunEvent::Started { unit } => writeln!(err, "{DIM}{host}: running as {unit}{DIM:#}"),
        RunEvent::Output { line } => {
            writeln!(out, "{}", output::plain(line))?;
            out.flush()
        }
        RunEvent::Finished { .. } => Ok(()),
    }
}

/// The closing line on stderr, and hostd's reason when it gives one;
/// nothing under --json, whose last line was `finished`.
pub(super) fn finished(err: &mut impl Write, s: &RunSettings, f: &Finished) -> std::io::Result<()> {
    if s.json {
        return Ok(());
    }
    let (host, what) = (&s.target.name, &s.what);
    let took = format!("{:.1}s", f.seconds);
    if f.result == "success" {
        writeln!(
            err,
            "{GREEN}{host}: {what} succeeded{GREEN:#} {DIM}in {took}{DIM:#}"
        )?;
    } else {
        let result = result(&f.result, f.exit_code);
        writeln!(
            err,
            "{RED}{host}: {what} failed: {result}{RED:#} {DIM}after {took}{DIM:#}"
        )?;
    }
    match &f.error {
        Some(e) => writeln!(err, "    {}", output::plain(e).replace('\n', "\n    ")),
        None => Ok(()),
    }
}

/// systemd's word, with the exit status when it says more (`exit-code
/// (exit 3)`).
fn result(word: &str, exit_code: Option<i32>) -> String {
    match exit_code {
        Some(c) if word != "success" => format!("{word} (exit {c})"),
        _ => word.to_owned(),
    }
}

/// One host's block of `jobs`.
pub(super) fn jobs(out: &mut impl Write, a: &Answer<JobsList>) -> std::io::Result<()> {
    writeln!(out, "{BOLD}{}{BOLD:#}", a.host)?;
    match &a.answer {
        Some(list) if list.jobs.is_empty() => {
            writeln!(out, "    {DIM}no jobs configured{DIM:#}")
        }
        Some(list) => table(out, &list.jobs),
        None => output::no_answer(out, "    ", a.error.as_deref()),
    }
}

fn table(out: &mut impl Write, jobs: &[JobStatus]) -> std::io::Result<()> {
    let rows: Vec<[String; 5]> = jobs
        .iter()
        .map(|j| {
            [
                j.name.clone(),
                j.schedule.clone(),
                last_run(j),
                if j.running {
                    "running".into()
                } else {
                    j.last_run
                        .as_ref()
                        .map_or_else(|| "-".into(), |r| result(&r.result, r.exit_code))
                },
                j.next_run.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["NAME", "SCHEDULE", "LAST RUN", "RESULT", "NEXT RUN"];
    columns_with(out, header, &rows, 5, |out, i| {
        let Some(j) = jobs.get(i).filter(|j| j.health != HealthStatus::Healthy) else {
            return Ok(());
        };
        let s = match j.health {
            HealthStatus::Unhealthy => RED,
            HealthStatus::Degraded | HealthStatus::Healthy => YELLOW,
        };
        let reason = j.reason.as_deref().unwrap_or("no reason given");
        writeln!(out, "      {s}{}: {reason}{s:#}", j.health.as_str())
    })
}

/// When the last run started and how long it took; its start alone while
/// it runs.
fn last_run(j: &JobStatus) -> String {
    let Some(run) = &j.last_run else {
        return "never".into();
    };
    match run
        .finished
        .as_deref()
        .and_then(|f| between(&run.started, f))
    {
        Some(took) => format!("{} ({})", run.started, humantime::format_duration(took)),
        None => run.started.clone(),
    }
}
