//! Output of `secrets list|sync`. Names, versions and dates only: hostd
//! sends nothing else.

use std::io::Write;

use hostd_api::{SecretsList, SecretsSyncResult};

use super::{HostSync, Secrets};
use crate::fleet::Reply;
use crate::output::{self, DIM, RED, YELLOW};

pub(super) fn list(
    out: &mut impl Write,
    json: bool,
    hosts: &[Reply<Secrets>],
) -> std::io::Result<()> {
    output::replies(out, json, hosts, |out, a| table(out, &a.secrets))
}

fn table(out: &mut impl Write, list: &SecretsList) -> std::io::Result<()> {
    write!(out, "  {}", list.path)?;
    match (&list.stale_since, &list.last_success) {
        (Some(since), _) => writeln!(out, "  {YELLOW}stale since {since}{YELLOW:#}")?,
        (None, Some(at)) => writeln!(out, "  {DIM}fetched {at}{DIM:#}")?,
        (None, None) => writeln!(out, "  {YELLOW}never fetched{YELLOW:#}")?,
    }
    if list.parameters.is_empty() {
        return writeln!(out, "    {DIM}no parameters{DIM:#}");
    }
    let name_w = list
        .parameters
        .iter()
        .map(|p| p.name.len())
        .chain([4])
        .max()
        .unwrap_or(4);
    let row = |name: &str, version: &str, modified: &str, services: &str| {
        format!("    {name:<name_w$}  {version:>7}  {modified:<20}  {services}")
    };
    let header = row("NAME", "VERSION", "LAST MODIFIED", "SERVICES");
    writeln!(out, "{DIM}{header}{DIM:#}")?;
    for p in &list.parameters {
        let services = if p.services.is_empty() {
            "-".to_owned()
        } else {
            p.services.join(", ")
        };
        let line = row(
            &p.name,
            &p.version.to_string(),
            p.last_modified.as_deref().unwrap_or("-"),
            &services,
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

pub(super) fn sync(
    out: &mut impl Write,
    json: bool,
    environment: &str,
    hosts: &[HostSync],
) -> std::io::Result<()> {
    if json {
        return output::json(out, hosts);
    }
    for h in hosts {
        output::host_line(out, h)?;
        if let Some(r) = &h.answer.result {
            result(out, r)?;
        }
        if let Some(e) = &h.error {
            writeln!(out, "    {RED}{e}{RED:#}")?;
        }
    }
    output::summary(out, environment, "secrets sync", hosts)
}

fn result(out: &mut impl Write, r: &SecretsSyncResult) -> std::io::Result<()> {
    if !r.fetched {
        let since = r
            .stale_since
            .as_deref()
            .map(|s| format!(" (stale since {s})"))
            .unwrap_or_default();
        writeln!(
            out,
            "    {YELLOW}fetch failed; services keep the last good set{since}{YELLOW:#}"
        )?;
    } else if r.changed.is_empty() && r.parameters.is_empty() {
        writeln!(out, "    nothing changed; nothing restarted")?;
    } else if r.changed.is_empty() {
        writeln!(
            out,
            "    parameters changed: {} (no service receives them; nothing restarted)",
            r.parameters.join(", ")
        )?;
    } else {
        writeln!(
            out,
            "    changed: {}; restarted: {}",
            r.changed.join(", "),
            output::names_or_none(&r.restarted)
        )?;
    }
    if let Some(e) = &r.error {
        writeln!(out, "    {RED}{e}{RED:#}")?;
    }
    Ok(())
}
