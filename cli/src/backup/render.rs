//! Output of `backups` and `backup now`. Times are shown as hostd sends
//! them (RFC 3339, UTC) so they can be pasted into a restore. Styles are
//! stripped by anstream when not a terminal.

use std::io::Write;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use bytesize::ByteSize;
use hostd_api::{BackupRun, BackupsList, DrillRun, SnapshotInfo};

use super::{HostBackups, HostRun};
use crate::service::render::host_line;

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const RED: Style = AnsiColor::Red.on_default().bold();

pub(super) use crate::service::render::json;

pub(super) fn list(out: &mut impl Write, hosts: &[HostBackups]) -> std::io::Result<()> {
    for h in hosts {
        write!(out, "{BOLD}{}{BOLD:#}  {DIM}{}{DIM:#}", h.host, h.address)?;
        match (&h.backups, &h.error) {
            (Some(list), _) => {
                writeln!(out, "  {}", list.repository)?;
                table(out, &list.snapshots)?;
                footer(out, list)?;
            }
            (None, error) => writeln!(
                out,
                "  {RED}{}{RED:#}",
                error.as_deref().unwrap_or("no answer")
            )?,
        }
    }
    Ok(())
}

/// restic's convention: 8 hex digits are enough to tell snapshots apart.
pub(crate) fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub(crate) fn size(bytes: u64) -> String {
    ByteSize(bytes).to_string()
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

/// Rows under a dim header, indented, each column as wide as its widest
/// cell; columns from `right` on are right-aligned so that magnitudes line
/// up.
pub(crate) fn columns<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
    right: usize,
) -> std::io::Result<()> {
    columns_with(out, header, rows, right, |_, _| Ok(()))
}

/// [`columns`], with `under(out, i)` writing what goes below row `i` (a
/// note that does not fit a column).
pub(crate) fn columns_with<W: Write, const N: usize>(
    out: &mut W,
    header: [&str; N],
    rows: &[[String; N]],
    right: usize,
    mut under: impl FnMut(&mut W, usize) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let header = header.map(str::to_owned);
    let mut widths = [0; N];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String; N]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i >= right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        format!("    {}", cells.join("  "))
    };
    writeln!(out, "{DIM}{}{DIM:#}", line(&header))?;
    for (i, row) in rows.iter().enumerate() {
        writeln!(out, "{}", line(row).trim_end())?;
        under(out, i)?;
    }
    Ok(())
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
    write!(
        out,
        "    last drill {} ({}{from}): ",
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
    between(&run.started, run.finished.as_deref()?)
}

/// Whole seconds from one RFC 3339 time to another, as hostd sends them.
pub(crate) fn between(started: &str, finished: &str) -> Option<Duration> {
    let started = humantime::parse_rfc3339_weak(started).ok()?;
    let finished = humantime::parse_rfc3339_weak(finished).ok()?;
    let d = finished.duration_since(started).ok()?;
    Some(Duration::from_secs(d.as_secs()))
}

pub(super) fn run(out: &mut impl Write, h: &HostRun) -> std::io::Result<()> {
    host_line(out, &h.host, &h.address, h.outcome)?;
    if let Some(run) = &h.run {
        if run.ok.is_none() {
            writeln!(
                out,
                "    started {} ({}); still running: `hostctl backups` shows how it ends",
                run.started, run.trigger
            )?;
        } else {
            written(out, &run.snapshots)?;
            let took = took(run).unwrap_or(Duration::from_secs(h.waited.as_secs()));
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

pub(super) fn summary(
    out: &mut impl Write,
    environment: &str,
    hosts: &[HostRun],
) -> std::io::Result<()> {
    crate::service::render::summary(
        out,
        environment,
        "backup now",
        hosts.iter().map(|h| (h.host.as_str(), h.outcome)),
    )
}
