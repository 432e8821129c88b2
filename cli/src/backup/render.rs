//! Output of `backups` and `backup now`. Times are shown as hostd sends
//! them (RFC 3339, UTC) so they can be pasted into a restore.

use std::io::Write;
use std::time::Duration;

use hostd_api::{BackupRun, BackupsList, DrillRun, SnapshotInfo};
use indicatif::{ProgressBar, ProgressStyle};

use super::{BackupSettings, Backups, HostRun};
use crate::fleet::{Part, Reply, Turn};
use crate::output::{self, DIM, GREEN, RED, YELLOW, columns, short_id, size};

pub(super) fn list(
    out: &mut impl Write,
    json: bool,
    hosts: &[Reply<Backups>],
) -> std::io::Result<()> {
    output::replies(out, json, hosts, |out, Backups { backups }| {
        writeln!(out, "  {}", backups.repository)?;
        table(out, &backups.snapshots)?;
        footer(out, backups)
    })
}
fn table(out: &mut impl Write, snapshots: &[SnapshotInfo]) -> std::io::Result<()> {
    if snapshots.is_empty() {
        return writeln!(out, "    {DIM}no snapshots{DIM:#}");
    }
    let header = ["ID", "TIME", "KIND", "DATABASE", "RELEASE", "SIZE", "ADDED"];
    let rows: Vec<[String; 7]> = snapshots
        .iter()
        .map(|s| {
            [
                short_id(&s.id).to_owned(),
                s.time.clone(),
                s.kind.as_str().to_owned(),
                s.database.clone().unwrap_or_else(|| "-".into()),
                s.release.clone().unwrap_or_else(|| "-".into()),
                size(s.size),
                size(s.added),
            ]
        })
        .collect();
    columns(out, header, &rows, 5)
}

fn footer(out: &mut impl Write, list: &BackupsList) -> std::io::Result<()> {
    match &list.last_run {
        None => writeln!(out, "    last run: {YELLOW}never{YELLOW:#}")?,
        Some(run) => {
            write!(out, "    last run {} ({}", run.started, run.trigger)?;
            if let Some(took) = took(run) {
                write!(out, ", took {}", humantime::format_duration(took))?;
            }
            write!(out, "): ")?;
            match run.ok {
                Some(true) => write!(out, "{GREEN}ok{GREEN:#}")?,
                None => write!(out, "{YELLOW}running{YELLOW:#}")?,
                Some(false) => {
                    let error = run.error.as_deref().unwrap_or("no reason given");
                    write!(out, "{RED}failed: {error}{RED:#}")?;
                    match &list.last_success {
                        Some(at) => write!(out, "; last success {at}")?,
                        None => write!(out, "; {YELLOW}no successful run known{YELLOW:#}")?,
                    }
                }
            }
            writeln!(out)?;
        }
    }
    match &list.last_drill {
        None => writeln!(out, "    last drill: {YELLOW}never{YELLOW:#}")?,
        Some(d) => drill(out, d)?,
    }
    match &list.next_run {
        Some(at) => writeln!(out, "    next run {at}"),
        None => writeln!(out, "    next run: {YELLOW}none scheduled{YELLOW:#}"),
    }
}

fn drill(out: &mut impl Write, d: &DrillRun) -> std::io::Result<()> {
    let from = d
        .snapshot
        .as_deref()
        .map(|s| format!(" from {}", short_id(s)))
        .unwrap_or_default();
    let took = output::between(&d.started, &d.finished)
        .map(|t| format!(", took {}", humantime::format_duration(t)))
        .unwrap_or_default();
    write!(
        out,
        "    last drill {} ({}{from}{took}): ",
        d.finished, d.database
    )?;
    let checks = format!("{} check(s) passed", d.checks_passed);
    if d.ok {
        writeln!(out, "{GREEN}ok{GREEN:#}, {checks}")
    } else {
        let error = d.error.as_deref().unwrap_or("no reason given");
        writeln!(out, "{RED}failed: {error}{RED:#} ({checks})")
    }
}

/// From the run's own times, so a joined run counts from its real start.
fn took(run: &BackupRun) -> Option<Duration> {
    output::between(&run.started, run.finished.as_deref()?)
}

fn run(out: &mut impl Write, h: &HostRun) -> std::io::Result<()> {
    output::host_line(out, h)?;
    if let Some(run) = &h.answer.run {
        if run.ok.is_none() {
            writeln!(
                out,
                "    started {} ({}); still running: `hostctl backups` shows how it ends",
                run.started, run.trigger
            )?;
        } else {
            written(out, &run.snapshots)?;
            let took = took(run).unwrap_or(Duration::from_secs(h.answer.waited.as_secs()));
            writeln!(
                out,
                "    {DIM}took {}{DIM:#}",
                humantime::format_duration(took)
            )?;
            if run.ok == Some(false) {
                let error = run.error.as_deref().unwrap_or("no reason given");
                writeln!(out, "    {RED}{error}{RED:#}")?;
            }
        }
    }
    if let Some(e) = &h.error {
        writeln!(out, "    {RED}{e}{RED:#}")?;
    }
    Ok(())
}

/// `    postgres app  1a2b3c4d  1.2 GiB  +12.0 MiB`, one line per snapshot.
fn written(out: &mut impl Write, snapshots: &[SnapshotInfo]) -> std::io::Result<()> {
    if snapshots.is_empty() {
        return writeln!(out, "    {DIM}no snapshot written{DIM:#}");
    }
    let label = |s: &SnapshotInfo| match &s.database {
        Some(db) => format!("{} {db}", s.kind.as_str()),
        None => s.kind.as_str().to_owned(),
    };
    let label_w = snapshots.iter().map(|s| label(s).len()).max().unwrap_or(0);
    let size_w = snapshots
        .iter()
        .map(|s| size(s.size).len())
        .max()
        .unwrap_or(0);
    for s in snapshots {
        writeln!(
            out,
            "    {:<label_w$}  {}  {:>size_w$}  {DIM}+{} added{DIM:#}",
            label(s),
            short_id(&s.id),
            size(s.size),
            size(s.added)
        )?;
    }
    Ok(())
}

/// `backup now` as it goes: a spinner on stderr while a host backs up
/// (for a person at a terminal), each host's block on stdout once its
/// answer is in, and the summary (or, with --json, the whole array) at
/// the end.
pub(super) struct Now<'w, W: Write> {
    out: &'w mut W,
    json: bool,
    progress: bool,
    spinner: Option<ProgressBar>,
}

impl<'w, W: Write> Now<'w, W> {
    pub(super) fn new(out: &'w mut W, s: &BackupSettings) -> Self {
        Self {
            out,
            json: s.json,
            progress: s.progress,
            spinner: None,
        }
    }

    pub(super) fn turn(&mut self, turn: Turn<'_, HostRun>) -> std::io::Result<()> {
        match turn {
            Turn::Begins(target) => {
                if self.progress {
                    self.spinner = Some(spinner(&target.name));
                }
                Ok(())
            }
            Turn::Ends(target, part) => {
                // Cleared before the host's result is printed on stdout.
                if let Some(s) = self.spinner.take() {
                    s.finish_and_clear();
                }
                if self.json {
                    return Ok(());
                }
                match part {
                    Part::Ran(h) => run(self.out, h),
                    Part::Skipped => run(self.out, &HostRun::not_touched(target)),
                }
            }
        }
    }

    pub(super) fn end(self, environment: &str, hosts: &[HostRun]) -> std::io::Result<()> {
        if self.json {
            return output::json(self.out, hosts);
        }
        output::summary(self.out, environment, "backup now", hosts)
    }
}

/// On stderr (indicatif's default).
fn spinner(host: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("backing up {host}…"));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
