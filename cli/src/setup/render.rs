//! What `hostctl setup` prints before the apply's own output.

use std::io::Write;

use super::Provisioned;

pub(super) fn provisioned(out: &mut impl Write, done: &[Provisioned]) -> std::io::Result<()> {
    for p in done {
        let build = p
            .hostd_build
            .as_deref()
            .and_then(|b| b.get(..12))
            .unwrap_or("unknown");
        let restarted = if p.restarted_hostd {
            ", hostd restarted on it"
        } else {
            ""
        };
        writeln!(
            out,
            "{}  provisioned in {:.1}s: hostd {build}{restarted}, operator {}",
            p.host, p.seconds, p.operator
        )?;
    }
    Ok(())
}
