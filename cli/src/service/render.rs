//! Output of the commands that change services. The reason a host failed
//! goes to stderr with the error, not here.

use std::io::Write;

use hostd_api::{ActionResult, ActiveState};

use super::{HostOutcome, ServiceSettings};
use crate::output::{self, DIM, GREEN, RED, YELLOW};

pub(super) fn report(
    out: &mut impl Write,
    s: &ServiceSettings,
    what: &str,
    hosts: &[HostOutcome],
) -> std::io::Result<()> {
    if s.json {
        output::json(out, hosts)
    } else {
        human(out, &s.targets.environment, what, hosts)
    }
}

pub(super) fn human(
    out: &mut impl Write,
    environment: &str,
    what: &str,
    hosts: &[HostOutcome],
) -> std::io::Result<()> {
    for h in hosts {
        output::host_line(out, h)?;
        for r in &h.answer.results {
            result(out, r)?;
        }
    }
    output::summary(out, environment, what, hosts)
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
