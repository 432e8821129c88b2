//! Output of `upgrade-hostd`: a line per host, from which build to which.

use std::io::Write;

use super::{HostUpgrade, Outcome};
use crate::output;

pub(super) fn results(
    out: &mut impl Write,
    json: bool,
    results: &[HostUpgrade],
) -> std::io::Result<()> {
    if json {
        return output::json(out, results);
    }
    for r in results {
        let outcome = match r.outcome {
            Outcome::Upgraded => "upgraded",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        };
        let short = |b: &str| b.chars().take(12).collect::<String>();
        let from = r
            .previous_build
            .as_deref()
            .map(short)
            .unwrap_or_else(|| "?".into());
        writeln!(
            out,
            "{}  {outcome}  {} -> {}  {}  {:.1}s",
            r.host,
            from,
            short(&r.build),
            r.version.as_deref().unwrap_or(""),
            r.seconds
        )?;
        if let Some(e) = &r.error {
            writeln!(out, "    {e}")?;
        }
    }
    Ok(())
}
