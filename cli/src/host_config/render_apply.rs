//! Output of `apply` past its plans (each host's steps on stderr as they
//! come, the per-host summary, the JSON document) and of `applies` (each
//! host's ledger).

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use hostd_api::{AppliesList, ApplyEvent};
use serde::Serialize;

use super::{HostApply, HostOutcome, HostPlan};
use crate::fleet::Answer;
use crate::output::{self, BOLD, DIM, GREEN, YELLOW, columns, plain};

const RED: Style = AnsiColor::Red.on_default();
/// What a ledger's table keeps of an error; `--json` has all of it.
const ERROR_CELL: usize = 60;

/// `apply --json`: the plans and what became of each host, in one
/// document whichever way the apply ended.
#[derive(Serialize)]
struct Report<'a> {
    plans: &'a [HostPlan],
    applies: &'a [HostApply],
}

pub(super) fn report(
    mut out: &mut dyn Write,
    json: bool,
    plans: &[HostPlan],
    applies: &[HostApply],
) -> io::Result<()> {
    if json {
        output::json(&mut out, &Report { plans, applies })
    } else {
        Ok(())
    }
}

pub(super) fn nothing_to_apply(out: &mut impl Write, json: bool) -> io::Result<()> {
    if json {
        return Ok(());
    }
    writeln!(
        out,
        "{GREEN}nothing to apply: every host runs its declared configuration{GREEN:#}"
    )
}

pub(super) fn dry_run(out: &mut impl Write, json: bool, changing: &[String]) -> io::Result<()> {
    if json {
        return Ok(());
    }
    writeln!(
        out,
        "dry run: would apply on {}; nothing changed",
        changing.join(", ")
    )
}

pub(super) fn question(environment: &str, changing: &[String]) -> String {
    format!(
        "Apply to {} host(s) of {environment} ({})? [y/N]",
        changing.len(),
        changing.join(", ")
    )
}

/// One host's events as log lines. A step that began and never ended is
/// the one that failed: the record carries only the error.
pub(super) struct Steps {
    host: String,
    open: Option<String>,
}

impl Steps {
    pub(super) fn new(host: &str) -> Self {
        Self {
            host: host.to_owned(),
            open: None,
        }
    }

    pub(super) fn event(&mut self, err: &mut impl Write, e: &ApplyEvent) -> io::Result<()> {
        let host = &self.host;
        match e {
            ApplyEvent::Waiting { holder } => writeln!(
                err,
                "{host}: waiting for the operations lock, held by {}",
                plain(holder)
            ),
            ApplyEvent::Step { step } => {
                self.open = Some(step.clone());
                writeln!(err, "{host}: {}", plain(step))
            }
            ApplyEvent::StepDone { step, seconds } => {
                if self.open.as_ref() == Some(step) {
                    self.open = None;
                }
                writeln!(
                    err,
                    "{DIM}{host}: {} done ({seconds:.1}s){DIM:#}",
                    plain(step)
                )
            }
            ApplyEvent::Finished { record } => {
                let outcome = HostOutcome::from(record.outcome);
                let s = style(outcome);
                if let (false, Some(step)) = (outcome.is_ok(), self.open.take()) {
                    writeln!(err, "{RED}{host}: {} failed{RED:#}", plain(&step))?;
                }
                writeln!(
                    err,
                    "{s}{host}: {} ({:.1}s){s:#}",
                    outcome.as_str(),
                    record.seconds
                )
            }
        }
    }
}

fn style(o: HostOutcome) -> Style {
    match o {
        HostOutcome::Applied | HostOutcome::Unchanged => GREEN,
        HostOutcome::RolledBack | HostOutcome::Unknown | HostOutcome::NotApplied => YELLOW,
        HostOutcome::Failed => RED,
        HostOutcome::Skipped => DIM,
    }
}

/// The per-host table, then each failure's error and the hosts not tried.
pub(super) fn summary(out: &mut impl Write, applies: &[HostApply]) -> io::Result<()> {
    writeln!(out)?;
    let rows: Vec<[String; 4]> = applies
        .iter()
        .map(|a| {
            let record = a.record.as_ref();
            [
                a.host.clone(),
                a.outcome.as_str().to_owned(),
                record.map_or_else(|| "-".into(), |r| short_digest(&r.digest)),
                record.map_or_else(|| "-".into(), |r| format!("{:.1}s", r.seconds)),
            ]
        })
        .collect();
    columns(out, ["HOST", "RESULT", "DIGEST", "TIME"], &rows, 3)?;
    for a in applies {
        if let Some(e) = a.error() {
            let s = style(a.outcome);
            let e = plain(e).replace('\n', "\n    ");
            writeln!(out, "\n{s}{}{s:#} ({}): {e}", a.host, a.outcome.as_str())?;
        }
    }
    let skipped: Vec<&str> = applies
        .iter()
        .filter(|a| a.outcome == HostOutcome::Skipped)
        .map(|a| a.host.as_str())
        .collect();
    if !skipped.is_empty() {
        writeln!(
            out,
            "\nnot tried, still on their previous configuration: {}",
            skipped.join(", ")
        )?;
    }
    Ok(())
}

/// `hostctl applies`: one host's ledger, oldest first.
pub(super) fn applies(out: &mut impl Write, a: &Answer<AppliesList>) -> io::Result<()> {
    writeln!(out, "{BOLD}{}{BOLD:#}", a.host)?;
    let Some(list) = &a.answer else {
        return output::no_answer(out, "    ", a.error.as_deref());
    };
    if list.applies.is_empty() {
        return writeln!(out, "    no applies recorded yet");
    }
    // Right-aligned by hand: the error column after it stays left-aligned.
    let seconds: Vec<String> = list
        .applies
        .iter()
        .map(|r| format!("{:.1}", r.seconds))
        .collect();
    let width = seconds
        .iter()
        .map(String::len)
        .chain([SECONDS.len()])
        .max()
        .unwrap_or_default();
    let rows: Vec<[String; 7]> = list
        .applies
        .iter()
        .zip(seconds)
        .map(|(r, s)| {
            [
                plain(&r.at).into_owned(),
                outcome(r.outcome),
                plain(&r.requested_by).into_owned(),
                plain(&r.source).into_owned(),
                short_digest(&r.digest),
                format!("{s:>width$}"),
                r.error.as_deref().map(one_line).unwrap_or_default(),
            ]
        })
        .collect();
    let seconds = format!("{SECONDS:>width$}");
    let header = [
        "TIME", "OUTCOME", "BY", "SOURCE", "DIGEST", &seconds, "ERROR",
    ];
    columns(out, header, &rows, header.len())
}

const SECONDS: &str = "SECONDS";

fn outcome(o: hostd_api::ApplyOutcome) -> String {
    HostOutcome::from(o).as_str().to_owned()
}

/// 12 hex digits tell configurations apart, as git's short hashes do.
fn short_digest(digest: &str) -> String {
    digest.get(..12).unwrap_or(digest).to_owned()
}

/// The first line of `error`, cut to fit a table row.
fn one_line(error: &str) -> String {
    let first = error.lines().next().unwrap_or_default();
    let cut: String = first.chars().take(ERROR_CELL).collect();
    let more = cut.len() < first.len() || error.lines().nth(1).is_some();
    let cut = plain(&cut).into_owned();
    if more { format!("{cut}…") } else { cut }
}
