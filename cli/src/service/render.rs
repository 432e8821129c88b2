//! Output of the commands that change services. Styles are always written;
//! anstream strips them when stdout is no terminal or NO_COLOR is set. The
//! reason a host failed goes to stderr with the error, not here.

use std::io::Write;

use anstyle::{AnsiColor, Style};
use hostd_api::{ActionResult, ActiveState};

use super::{HostOutcome, Outcome};

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const RED: Style = AnsiColor::Red.on_default().bold();

/// `--json` output of every command applied host by host: one array, one
/// object per host.
pub(crate) fn json<T: serde::Serialize>(out: &mut impl Write, hosts: &[T]) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, hosts)?;
    writeln!(out)
}

/// `--json` of a streamed answer (`restore`, `run`): one event a line,
/// flushed so that a pipe sees it now.
pub(crate) fn json_line<T: serde::Serialize>(
    out: &mut impl Write,
    event: &T,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    writeln!(out)?;
    out.flush()
}

/// The first line of a host's block, for every command applied host by
/// host (`scale`, `restart`, `secrets sync`...).
pub(crate) fn host_line(
    out: &mut impl Write,
    host: &str,
    address: &str,
    outcome: Outcome,
) -> std::io::Result<()> {
    let (style, label) = match outcome {
        Outcome::Done => (GREEN, "done"),
        Outcome::Failed => (RED, "failed"),
        Outcome::NotTouched => (DIM, "not touched"),
    };
    writeln!(
        out,
        "{BOLD}{host}{BOLD:#}  {DIM}{address}{DIM:#}  {style}{label}{style:#}"
    )
}

pub(super) fn human(
    out: &mut impl Write,
    environment: &str,
    what: &str,
    hosts: &[HostOutcome],
) -> std::io::Result<()> {
    for h in hosts {
        host_line(out, &h.host, &h.address, h.outcome)?;
        for r in &h.results {
            result(out, r)?;
        }
    }
    summary(
        out,
        environment,
        what,
        hosts.iter().map(|h| (h.host.as_str(), h.outcome)),
    )
}

/// `    api  4.2s` then the units hostd touched, as they are now.
fn result(out: &mut impl Write, r: &ActionResult) -> std::io::Result<()> {
    writeln!(out, "    {}  {DIM}{:.1}s{DIM:#}", r.service, r.seconds)?;
    let width = r.units.iter().map(|u| u.unit.len()).max().unwrap_or(0);
    for u in &r.units {
        let style = match u.active_state {
            ActiveState::Active => GREEN,
            ActiveState::Failed => RED,
            _ => YELLOW,
        };
        writeln!(
            out,
            "      {:<width$}  {style}{}/{}{style:#}",
            u.unit,
            u.active_state.as_str(),
            u.sub_state
        )?;
    }
    Ok(())
}

/// One closing line answering "where did it happen, where not?", for every
/// command applied host by host.
pub(crate) fn summary<'a>(
    out: &mut impl Write,
    environment: &str,
    what: &str,
    hosts: impl IntoIterator<Item = (&'a str, Outcome)>,
) -> std::io::Result<()> {
    let hosts: Vec<(&str, Outcome)> = hosts.into_iter().collect();
    let names = |o: Outcome| {
        let v: Vec<&str> = hosts.iter().filter(|h| h.1 == o).map(|h| h.0).collect();
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    if hosts.iter().all(|h| h.1 == Outcome::Done) {
        writeln!(
            out,
            "{GREEN}{environment}: {what} done on {} host(s){GREEN:#}",
            hosts.len()
        )
    } else if hosts.len() == 1 {
        writeln!(out, "{RED}{environment}: {what} failed{RED:#}")
    } else {
        writeln!(
            out,
            "{RED}{environment}: {what} failed on {}; done on: {}; not touched: {}{RED:#}",
            names(Outcome::Failed),
            names(Outcome::Done),
            names(Outcome::NotTouched)
        )
    }
}
