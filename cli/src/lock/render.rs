//! Output of `lock status|release`: a line per host.

use std::io::Write;

use hostd_api::LockStatus;

use crate::fleet::Answer;

/// One host's line, and what hostd's recovery reported under it.
pub(super) fn lock(
    out: &mut impl Write,
    a: &Answer<LockStatus>,
    released: bool,
) -> std::io::Result<()> {
    let Some(s) = &a.answer else {
        return writeln!(
            out,
            "{}: {}",
            a.host,
            a.error.as_deref().unwrap_or("no answer")
        );
    };
    match &s.holder {
        Some(h) => writeln!(
            out,
            "{}: held by `{}` ({} since {}, run by hostd pid {})",
            a.host, h.operation, h.requested_by, h.since, h.pid
        )?,
        None if released => writeln!(out, "{}: free (released)", a.host)?,
        None => writeln!(out, "{}: free", a.host)?,
    }
    for note in &s.recovered {
        writeln!(out, "    {note}")?;
    }
    Ok(())
}
