//! Output of `hostctl status`.

use std::io::Write;
use std::time::Duration;

use anstyle::Style;
use hostd_api::{ActiveState, HealthStatus, HostStatus, UnitStatus};

use super::{HostReport, StatusSettings};
use crate::output::{self, DIM, GREEN, RED, YELLOW};

pub(super) fn reports(
    out: &mut impl Write,
    s: &StatusSettings,
    reports: &[HostReport],
) -> std::io::Result<()> {
    if s.json {
        output::json(out, reports)
    } else {
        human(out, &s.targets.environment, reports)
    }
}

fn health_style(h: HealthStatus) -> Style {
    match h {
        HealthStatus::Healthy => GREEN,
        HealthStatus::Degraded => YELLOW,
        HealthStatus::Unhealthy => RED,
    }
}

fn unit_style(s: ActiveState) -> Style {
    match s {
        ActiveState::Active => GREEN,
        ActiveState::Failed => RED,
        ActiveState::Reloading
        | ActiveState::Inactive
        | ActiveState::Activating
        | ActiveState::Deactivating
        | ActiveState::Maintenance
        | ActiveState::Refreshing
        | ActiveState::Unknown => YELLOW,
    }
}

pub(super) fn human(
    out: &mut impl Write,
    environment: &str,
    reports: &[HostReport],
) -> std::io::Result<()> {
    for report in reports {
        host(out, report)?;
    }
    summary(out, environment, reports)
}

fn host(out: &mut impl Write, r: &HostReport) -> std::io::Result<()> {
    output::host_heading(out, &r.host, &r.address)?;
    write!(out, "  ")?;
    let Some(status) = &r.status else {
        return no_status(out, r);
    };
    let health = status.health.status;
    let hs = health_style(health);
    let uptime = humantime::format_duration(Duration::from_secs(status.hostd_uptime_seconds));
    writeln!(
        out,
        "{hs}{}{hs:#}  hostd {} up {uptime}",
        health.as_str(),
        status.hostd_version
    )?;
    if status.hostname != r.host && status.hostname != r.address {
        writeln!(out, "    {DIM}hostname {}{DIM:#}", status.hostname)?;
    }
    if let Some(i) = &status.instance {
        let place = i.availability_zone.as_deref().unwrap_or(&i.region);
        let kind = i.instance_type.as_deref().unwrap_or("");
        writeln!(
            out,
            "    {DIM}instance {} {kind} {place}{DIM:#}",
            i.instance_id
        )?;
    }
    if let Some(a) = &status.last_apply {
        let outcome = a.outcome.as_str();
        let digest = a.digest.get(..12).unwrap_or(&a.digest);
        writeln!(
            out,
            "    {DIM}config {outcome} {} from {} by {} ({digest}){DIM:#}",
            a.at, a.source, a.requested_by
        )?;
    }
    if let Some(s) = &status.shipping {
        shipping(out, s)?;
    }
    units(out, status)?;
    components(out, status)?;
    recent_failures(out, status)
}

/// `cloudwatch lag 3s, backlog 12 KiB` (and what is wrong, when it is).
fn shipping(out: &mut impl Write, s: &hostd_api::ShippingStatus) -> std::io::Result<()> {
    let lag = humantime::format_duration(Duration::from_secs(s.lag_seconds));
    let behind = s.lag_seconds > s.max_lag_seconds;
    let style = if behind { YELLOW } else { DIM };
    write!(
        out,
        "    {style}cloudwatch {} lag {lag}, backlog {} KiB",
        s.log_group,
        s.backlog_bytes.div_ceil(1024)
    )?;
    if s.dropped_lines > 0 {
        write!(out, ", {} lines dropped", s.dropped_lines)?;
    }
    if let Some(p) = &s.problem {
        write!(out, ": {p}")?;
    }
    writeln!(out, "{style:#}")
}

fn no_status(out: &mut impl Write, r: &HostReport) -> std::io::Result<()> {
    let what = if r.reachable { "error" } else { "unreachable" };
    writeln!(out, "{RED}{what}{RED:#}")?;
    if let Some(error) = &r.error {
        writeln!(out, "    {error}")?;
    }
    if let Some(hint) = &r.hint {
        writeln!(out, "    {DIM}hint: {hint}{DIM:#}")?;
    }
    Ok(())
}

/// Each unit as it is, then what hostctl did to a service or what
/// systemd had to do for it.
fn units(out: &mut impl Write, status: &HostStatus) -> std::io::Result<()> {
    let label = |u: &UnitStatus| match u.instance {
        Some(n) => format!("{}@{n}", u.service),
        None => u.service.clone(),
    };
    let width = status
        .units
        .iter()
        .map(|u| label(u).len())
        .max()
        .unwrap_or(0);
    for unit in &status.units {
        let us = unit_style(unit.active_state);
        writeln!(
            out,
            "    {:<width$}  {us}{}/{}{us:#}  {DIM}{}{DIM:#}",
            label(unit),
            unit.active_state.as_str(),
            unit.sub_state,
            unit.unit,
        )?;
    }
    for svc in &status.services {
        let mut notes = Vec::new();
        if !svc.running {
            notes.push("stopped by hostctl stop".to_owned());
        }
        if svc.restarts > 0 {
            notes.push(format!("{} restart(s) after failures", svc.restarts));
        }
        if !notes.is_empty() {
            writeln!(
                out,
                "    {YELLOW}{}: {}{YELLOW:#}",
                svc.name,
                notes.join(", ")
            )?;
        }
    }
    if status.units.is_empty() {
        writeln!(out, "    {DIM}no units configured{DIM:#}")?;
    }
    Ok(())
}

/// The health checks that are not healthy, with their reasons, and the
/// healthy ones with a note (an app not deployed yet).
fn components(out: &mut impl Write, status: &HostStatus) -> std::io::Result<()> {
    for c in &status.health.components {
        if c.status == HealthStatus::Healthy {
            if let Some(note) = &c.reason {
                writeln!(out, "    {DIM}{}: {note}{DIM:#}", c.name)?;
            }
            continue;
        }
        let cs = health_style(c.status);
        write!(out, "    {cs}{} {}{cs:#}", c.status.as_str(), c.name)?;
        match &c.reason {
            Some(reason) => writeln!(out, ": {reason}")?,
            None => writeln!(out)?,
        }
    }
    Ok(())
}

/// The newest few; `--json` has them all (hostd keeps the last 50).
fn recent_failures(out: &mut impl Write, status: &HostStatus) -> std::io::Result<()> {
    const SHOWN_EVENTS: usize = 5;
    let recent = status.events.len().saturating_sub(SHOWN_EVENTS);
    if !status.events.is_empty() {
        writeln!(out, "    {DIM}recent failures:{DIM:#}")?;
    }
    for e in &status.events[recent..] {
        let exit = match (e.result.as_str(), e.exit_status) {
            ("signal", Some(n)) => format!(" (signal {n})"),
            (_, Some(n)) => format!(" (exit {n})"),
            (_, None) => String::new(),
        };
        writeln!(
            out,
            "      {DIM}{}{DIM:#} {} {}{exit}: {}",
            e.time, e.unit, e.result, e.action
        )?;
    }
    Ok(())
}

/// One closing line so a long listing still answers "is anything wrong?".
fn summary(out: &mut impl Write, environment: &str, reports: &[HostReport]) -> std::io::Result<()> {
    let troubled: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.status {
            None if r.reachable => Some(format!("{} error", r.host)),
            None => Some(format!("{} unreachable", r.host)),
            Some(s) if s.health.status == HealthStatus::Unhealthy => {
                Some(format!("{} unhealthy", r.host))
            }
            Some(_) => None,
        })
        .collect();
    let total = reports.len();
    if troubled.is_empty() {
        writeln!(
            out,
            "{GREEN}{environment}: all {total} host(s) serving{GREEN:#}"
        )
    } else {
        writeln!(
            out,
            "{RED}{environment}: {} of {total} host(s) in trouble: {}{RED:#}",
            troubled.len(),
            troubled.join(", ")
        )
    }
}
