//! Output of `secrets list|sync`. Names, versions and dates only: hostd
//! sends nothing else. Styles are stripped by anstream when not a terminal.

use std::io::Write;

use anstyle::{AnsiColor, Style};
use hostd_api::{SecretsList, SecretsSyncResult};

use super::{HostList, HostSync};
use crate::service::render::{host_line, summary};

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const RED: Style = AnsiColor::Red.on_default().bold();

pub(super) use crate::service::render::json;

pub(super) fn list(out: &mut impl Write, hosts: &[HostList]) -> std::io::Result<()> {
    for h in hosts {
        write!(out, "{BOLD}{}{BOLD:#}  {DIM}{}{DIM:#}", h.host, h.address)?;
        match (&h.secrets, &h.error) {
            (Some(list), _) => table(out, list)?,
            (None, error) => writeln!(
                out,
                "  {RED}{}{RED:#}",
                error.as_deref().unwrap_or("no answer")
            )?,
        }
    }
    Ok(())
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
    environment: &str,
    hosts: &[HostSync],
) -> std::io::Result<()> {
    for h in hosts {
        host_line(out, &h.host, &h.address, h.outcome)?;
        if let Some(r) = &h.result {
            result(out, r)?;
        }
        if let Some(e) = &h.error {
            writeln!(out, "    {RED}{e}{RED:#}")?;
        }
    }
    summary(
        out,
        environment,
        "secrets sync",
        hosts.iter().map(|h| (h.host.as_str(), h.outcome)),
    )
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
    } else if r.changed.is_empty() {
        writeln!(out, "    nothing changed; nothing restarted")?;
    } else {
        let restarted = if r.restarted.is_empty() {
            "none".to_owned()
        } else {
            r.restarted.join(", ")
        };
        writeln!(
            out,
            "    changed: {}; restarted: {restarted}",
            r.changed.join(", ")
        )?;
    }
    if let Some(e) = &r.error {
        writeln!(out, "    {RED}{e}{RED:#}")?;
    }
    Ok(())
}
