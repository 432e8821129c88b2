//! Output of `deploy` and `rollback`: the build's and hostd's steps on
//! stderr as they come, the per-host summary on stdout (a JSON array with
//! --json).

use std::io::Write;

use anstyle::{AnsiColor, Style};
use hostd_api::DeployEvent;

use super::host::{HostOutcome, HostResult};
use crate::config::DeployService;
use crate::output::{self, DIM, GREEN, YELLOW, columns, size};

/// Not bold, unlike the other commands' red: a deploy's summary is a table.
const RED: Style = AnsiColor::Red.on_default();

/// The build command about to run, before its own output.
pub(super) fn building(svc: &DeployService, command: &str) {
    eprintln!("build {}: {command}", svc.name);
}

/// One host's events as log lines on stderr. A step that began and never
/// ended is the one that failed (a hook, a task): `finished` carries only
/// the error, so the step is named when the host's deploy ends with one.
pub(super) struct Steps<W: Write> {
    host: String,
    open: Option<String>,
    err: W,
}

impl<W: Write> Steps<W> {
    pub(super) fn new(host: &str, err: W) -> Self {
        Self {
            host: host.to_owned(),
            open: None,
            err,
        }
    }

    /// `finished` is left to the summary, but for naming the failed step.
    pub(super) fn event(&mut self, e: &DeployEvent) -> std::io::Result<()> {
        let (host, err) = (&self.host, &mut self.err);
        match e {
            DeployEvent::Waiting { holder } => {
                writeln!(err, "{host}: waiting for the lock: {holder}")
            }
            DeployEvent::Step { step } => {
                self.open = Some(step.clone());
                writeln!(err, "{host}: {step}")
            }
            DeployEvent::StepDone { step, seconds } => {
                if self.open.as_ref() == Some(step) {
                    self.open = None;
                }
                writeln!(err, "{DIM}{host}: {step} done ({seconds:.1}s){DIM:#}")
            }
            DeployEvent::Output { step, line } => {
                writeln!(err, "{DIM}{host}: {step} |{DIM:#} {}", output::plain(line))
            }
            DeployEvent::Finished { error: None, .. } => Ok(()),
            DeployEvent::Finished { error: Some(_), .. } => match self.open.take() {
                Some(step) => writeln!(err, "{RED}{host}: {step} failed{RED:#}"),
                None => Ok(()),
            },
        }
    }
}

fn style(o: HostOutcome) -> Style {
    match o {
        HostOutcome::Ok => GREEN,
        HostOutcome::RolledBack | HostOutcome::Unknown => YELLOW,
        HostOutcome::Failed => RED,
        HostOutcome::Skipped => DIM,
    }
}

pub(super) fn results(
    out: &mut impl Write,
    json: bool,
    results: &[HostResult],
) -> std::io::Result<()> {
    if json {
        output::json(out, results)
    } else {
        summary(out, results)
    }
}

pub(super) fn summary(out: &mut impl Write, results: &[HostResult]) -> std::io::Result<()> {
    let rows: Vec<[String; 5]> = results
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.outcome.as_str().to_owned(),
                r.serving.clone().unwrap_or_else(|| "-".into()),
                match r.uploaded_bytes {
                    Some(b) => size(b),
                    None if r.outcome == HostOutcome::Skipped => "-".into(),
                    None => "none".into(),
                },
                if r.outcome == HostOutcome::Skipped {
                    "-".into()
                } else {
                    format!("{:.1}s", r.seconds)
                },
            ]
        })
        .collect();
    columns(
        out,
        ["HOST", "RESULT", "SERVING", "UPLOADED", "TIME"],
        &rows,
        3,
    )?;
    for r in results {
        if let Some(e) = &r.error {
            let s = style(r.outcome);
            // A hook's or task's error ends with its last output lines.
            let e = output::plain(e).replace('\n', "\n    ");
            writeln!(out, "\n{s}{}{s:#} ({}): {e}", r.host, r.outcome.as_str())?;
        }
    }
    let skipped: Vec<&str> = results
        .iter()
        .filter(|r| r.outcome == HostOutcome::Skipped)
        .map(|r| r.host.as_str())
        .collect();
    if !skipped.is_empty() {
        writeln!(
            out,
            "\nnot tried, still on their previous release: {}",
            skipped.join(", ")
        )?;
    }
    Ok(())
}
