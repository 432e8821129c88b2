//! Output of `restore`: the plan and the result on stdout, the steps on
//! stderr (progress bars only for a person at a terminal); with --json,
//! hostd's events on stdout and nothing else.

use std::io::Write;
use std::time::Duration;

use hostd_api::{BackupKind, RestoreEvent, RestorePlan, SnapshotInfo};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::RestoreSettings;
use crate::config::HostTarget;
use crate::output::{self, DIM, GREEN, YELLOW, columns, json_line, short_id, size};

/// An event of the dry run: the plan as a table, or under --json its event
/// (every event for --dry-run, whose `finished` is the last; else the
/// restore's own stream follows).
pub(super) fn plan_event(
    out: &mut impl Write,
    s: &RestoreSettings,
    event: &RestoreEvent,
) -> std::io::Result<()> {
    let is_plan = matches!(event, RestoreEvent::Plan { .. });
    if s.json && (s.dry_run || is_plan) {
        return json_line(out, event);
    }
    match event {
        RestoreEvent::Plan { plan: p, .. } if !s.json => plan(out, &s.target, p),
        _ => Ok(()),
    }
}

pub(super) fn dry_run_done(out: &mut impl Write, s: &RestoreSettings) -> std::io::Result<()> {
    if s.json {
        return Ok(());
    }
    writeln!(out, "    {DIM}dry run: nothing changed{DIM:#}")
}

/// The restore's events: under --json each on stdout; else its steps on
/// stderr, a word if hostd's plan is not the one confirmed, and the
/// result on stdout.
pub(super) struct Restoring<'a, O: Write, E: Write> {
    out: &'a mut O,
    steps: Follower<&'a mut E>,
    json: bool,
    host: &'a str,
    confirmed: &'a RestorePlan,
}

impl<'a, O: Write, E: Write> Restoring<'a, O, E> {
    pub(super) fn new(
        out: &'a mut O,
        err: &'a mut E,
        s: &'a RestoreSettings,
        confirmed: &'a RestorePlan,
    ) -> Self {
        Self {
            out,
            steps: Follower::new(err, s.progress),
            json: s.json,
            host: &s.target.name,
            confirmed,
        }
    }

    pub(super) fn event(&mut self, event: &RestoreEvent) -> std::io::Result<()> {
        if self.json {
            return json_line(self.out, event);
        }
        match event {
            RestoreEvent::Plan { plan, .. } => self.steps.check_plan(self.confirmed, plan),
            RestoreEvent::Finished { ok, seconds, .. } => {
                self.steps.clear();
                if *ok {
                    writeln!(
                        self.out,
                        "{GREEN}restored {} in {seconds:.1}s{GREEN:#}",
                        self.host
                    )?;
                }
                Ok(())
            }
            other => self.steps.event(other),
        }
    }
}

fn plan(out: &mut impl Write, target: &HostTarget, plan: &RestorePlan) -> std::io::Result<()> {
    output::host_heading(out, &target.name, &target.destination)?;
    writeln!(out, "  restore plan")?;
    if plan.snapshots.is_empty() {
        writeln!(out, "    {DIM}no snapshot to restore{DIM:#}")?;
    } else {
        let rows: Vec<[String; 5]> = plan
            .snapshots
            .iter()
            .map(|s| {
                [
                    short_id(&s.id).to_owned(),
                    s.time.clone(),
                    s.kind.as_str().to_owned(),
                    source(s),
                    size(s.size),
                ]
            })
            .collect();
        columns(out, ["ID", "TIME", "KIND", "SOURCE", "SIZE"], &rows, 4)?;
    }
    writeln!(
        out,
        "    stopped, then started again: {}",
        output::names_or_none(&plan.stop)
    )?;
    writeln!(
        out,
        "    restarted to load the data: {}",
        output::names_or_none(&plan.restart)
    )?;
    for note in &plan.notes {
        writeln!(out, "    {YELLOW}note: {}{YELLOW:#}", output::plain(note))?;
    }
    Ok(())
}

/// What a snapshot brings back: the database, or the paths.
fn source(s: &SnapshotInfo) -> String {
    match (s.kind, &s.database) {
        (BackupKind::Postgres, Some(db)) => db.clone(),
        (BackupKind::Files, _) if !s.paths.is_empty() => s.paths.join(", "),
        _ => "-".into(),
    }
}

const TICK: Duration = Duration::from_millis(120);
const SPINNER: &str = "  {spinner} {msg} {elapsed}";
const BYTES: &str = "  {spinner} {msg} {binary_bytes} ({binary_bytes_per_sec})";
const BYTES_OF: &str =
    "  {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)";

/// How the current bar looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    Spinner,
    Bytes,
    BytesOf(u64),
}

/// The bar of what is going on now.
pub(super) struct Shown {
    pub(super) key: String,
    pub(super) bar: ProgressBar,
    pub(super) look: Look,
}

/// The restore's steps on stderr as they happen: a line when a step
/// begins and when it ends; with bars, a spinner or a byte count replaces
/// the first line. Any bar is cleared before a line is written.
pub(super) struct Follower<W: Write> {
    err: W,
    draw: Option<fn() -> ProgressDrawTarget>,
    pub(super) shown: Option<Shown>,
}

impl<W: Write> Follower<W> {
    pub(super) fn new(err: W, bars: bool) -> Self {
        let draw: fn() -> ProgressDrawTarget = ProgressDrawTarget::stderr;
        Self::drawing(err, bars.then_some(draw))
    }

    /// Bars drawn where `draw` says (hidden in tests).
    pub(super) fn drawing(err: W, draw: Option<fn() -> ProgressDrawTarget>) -> Self {
        Self {
            err,
            draw,
            shown: None,
        }
    }

    pub(super) fn event(&mut self, event: &RestoreEvent) -> std::io::Result<()> {
        match event {
            RestoreEvent::Waiting { holder } => self.begin(
                "waiting",
                format!("waiting for the host's operations lock, held by {holder}"),
            ),
            RestoreEvent::Step { step } => self.begin(step, format!("{step}…")),
            RestoreEvent::Progress { step, bytes, total } => {
                self.progress(step, *bytes, *total);
                Ok(())
            }
            RestoreEvent::StepDone { step, seconds } => {
                self.clear();
                writeln!(
                    self.err,
                    "  {step}  {GREEN}done{GREEN:#} {DIM}{seconds:.1}s{DIM:#}"
                )
            }
            RestoreEvent::Plan { .. } | RestoreEvent::Finished { .. } => Ok(()),
        }
    }

    /// hostd's plan for the restore should be the one confirmed (hostd
    /// refuses one that changed); if not, the operator must know.
    pub(super) fn check_plan(
        &mut self,
        confirmed: &RestorePlan,
        plan: &RestorePlan,
    ) -> std::io::Result<()> {
        if confirmed == plan {
            return Ok(());
        }
        self.clear();
        let ids: Vec<&str> = plan.snapshots.iter().map(|s| short_id(&s.id)).collect();
        writeln!(
            self.err,
            "{YELLOW}warning: hostd's plan differs from the one shown: snapshots {}; stopped: {}; restarted: {}{YELLOW:#}",
            ids.join(", "),
            plan.stop.join(", "),
            plan.restart.join(", ")
        )
    }

    pub(super) fn clear(&mut self) {
        if let Some(shown) = self.shown.take() {
            shown.bar.finish_and_clear();
        }
    }

    fn begin(&mut self, key: &str, message: String) -> std::io::Result<()> {
        self.clear();
        match self.draw {
            Some(draw) => {
                self.shown = Some(spinner(draw, key, message));
                Ok(())
            }
            None => writeln!(self.err, "  {message}"),
        }
    }

    fn progress(&mut self, step: &str, bytes: u64, total: Option<u64>) {
        let Some(draw) = self.draw else {
            return;
        };
        if self.shown.as_ref().is_none_or(|s| s.key != step) {
            self.clear();
            self.shown = Some(spinner(draw, step, step.to_owned()));
        }
        let Some(shown) = &mut self.shown else {
            return;
        };
        let look = total.map_or(Look::Bytes, Look::BytesOf);
        if shown.look != look {
            match look {
                Look::BytesOf(total) => shown.bar.set_length(total),
                Look::Bytes | Look::Spinner => shown.bar.unset_length(),
            }
            shown.bar.set_style(style(match look {
                Look::BytesOf(_) => BYTES_OF,
                Look::Bytes | Look::Spinner => BYTES,
            }));
            shown.look = look;
        }
        shown.bar.set_position(bytes);
    }
}

impl<W: Write> Drop for Follower<W> {
    /// A bar left behind would garble the error printed after it.
    fn drop(&mut self) {
        self.clear();
    }
}

fn spinner(draw: fn() -> ProgressDrawTarget, key: &str, message: String) -> Shown {
    let bar = ProgressBar::with_draw_target(None, draw());
    bar.set_style(style(SPINNER));
    bar.set_message(message);
    bar.enable_steady_tick(TICK);
    Shown {
        key: key.to_owned(),
        bar,
        look: Look::Spinner,
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}
