//! Output of `releases`: per host, its releases and its ledger.

use std::io::Write;

use hostd_api::ReleasesList;

use crate::fleet::Answer;
use crate::output::columns;

/// One host's block.
pub(super) fn releases(out: &mut impl Write, a: &Answer<ReleasesList>) -> std::io::Result<()> {
    let Some(r) = &a.answer else {
        return writeln!(
            out,
            "{}: {}\n",
            a.host,
            a.error.as_deref().unwrap_or("no answer")
        );
    };
    writeln!(
        out,
        "{}  {}  current {}  (rollback returns to {})",
        a.host,
        r.service,
        r.current.as_deref().unwrap_or("none"),
        r.previous.as_deref().unwrap_or("nothing")
    )?;
    writeln!(out, "    installed: {}", r.installed.join(", "))?;
    let rows: Vec<[String; 6]> = r
        .ledger
        .iter()
        .map(|e| {
            [
                e.finished.clone(),
                e.action.clone(),
                e.version.clone(),
                e.result.clone(),
                e.by.clone(),
                e.digest.get(..12).unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        writeln!(out, "    no deploys recorded yet")?;
    } else {
        columns(
            out,
            ["FINISHED", "ACTION", "VERSION", "RESULT", "BY", "ARTIFACT"],
            &rows,
            6,
        )?;
    }
    writeln!(out)
}
