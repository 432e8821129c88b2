//! Output of `diff`, and the plans `apply` shows before it asks: per
//! host, the keys that change, the generated unit files as unified diffs,
//! then what hostd would do.

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use hostd_api::{ActionKind, ConfigPlan, KeyChange, PlanAction, UnitFileChange};
use similar::TextDiff;

use super::HostPlan;
use crate::output::{self, BOLD, DIM, GREEN, YELLOW, host_heading, plain};

/// Not bold, unlike the other commands' red: removed lines are no alarm.
const RED: Style = AnsiColor::Red.on_default();
const CYAN: Style = AnsiColor::Cyan.on_default();

/// Every host's plan: the JSON array, or each host's block.
pub(super) fn plans(out: &mut impl Write, json: bool, plans: &[HostPlan]) -> io::Result<()> {
    if json {
        return output::json(out, plans);
    }
    plans.iter().try_for_each(|p| plan(out, p))
}

fn plan(out: &mut impl Write, p: &HostPlan) -> io::Result<()> {
    host_heading(out, &p.host, &p.address)?;
    writeln!(out, "  {}", plain(&p.source))?;
    match &p.plan {
        Some(plan) if plan.is_empty() => writeln!(out, "    {DIM}no changes{DIM:#}"),
        Some(plan) => changes(out, plan),
        None => {
            // hostd's refusal names the file, line and key over lines of
            // its own at times.
            let error = p.error.as_deref().map(|e| indented(e, "    "));
            output::no_answer(out, "    ", error.as_deref())
        }
    }
}

fn changes(out: &mut impl Write, plan: &ConfigPlan) -> io::Result<()> {
    if !plan.keys.is_empty() {
        writeln!(out, "  {DIM}keys{DIM:#}")?;
        plan.keys.iter().try_for_each(|k| key(out, k))?;
    }
    if !plan.units.is_empty() {
        writeln!(out, "  {DIM}unit files{DIM:#}")?;
        plan.units.iter().try_for_each(|u| unit(out, u))?;
    }
    if !plan.actions.is_empty() {
        writeln!(out, "  {DIM}actions{DIM:#}")?;
        plan.actions.iter().try_for_each(|a| action(out, a))?;
    }
    Ok(())
}

fn key(out: &mut impl Write, k: &KeyChange) -> io::Result<()> {
    let value = |v: &str| indented(v, "      ");
    let name = plain(&k.key);
    match (&k.before, &k.after) {
        (Some(before), Some(after)) => writeln!(
            out,
            "    {YELLOW}~{YELLOW:#} {name}: {} -> {}",
            value(before),
            value(after)
        ),
        (None, Some(after)) => writeln!(out, "    {GREEN}+ {name} = {}{GREEN:#}", value(after)),
        (Some(before), None) => writeln!(out, "    {RED}- {name} = {}{RED:#}", value(before)),
        (None, None) => writeln!(out, "    {YELLOW}~{YELLOW:#} {name}"),
    }
}

/// A unit file as a unified diff, git's way: `a/` before, `b/` after,
/// /dev/null for a file added or removed.
fn unit(out: &mut impl Write, u: &UnitFileChange) -> io::Result<()> {
    let name = |side: &str, text: &Option<String>| match text {
        Some(_) => format!("{side}/{}", u.unit),
        None => "/dev/null".to_owned(),
    };
    let (before, after) = (
        u.before.as_deref().unwrap_or_default(),
        u.after.as_deref().unwrap_or_default(),
    );
    let diff = TextDiff::from_lines(before, after);
    let text = diff
        .unified_diff()
        .header(&name("a", &u.before), &name("b", &u.after))
        .to_string();
    if text.is_empty() {
        return writeln!(
            out,
            "    {DIM}{}: rewritten, same text{DIM:#}",
            plain(&u.unit)
        );
    }
    for (i, line) in text.lines().enumerate() {
        let style = match line.as_bytes().first() {
            _ if i < 2 => BOLD,
            Some(b'@') => CYAN,
            Some(b'+') => GREEN,
            Some(b'-') => RED,
            _ => Style::new(),
        };
        writeln!(out, "    {style}{}{style:#}", plain(line))?;
    }
    Ok(())
}

fn action(out: &mut impl Write, a: &PlanAction) -> io::Result<()> {
    let (style, kind) = match a.kind {
        ActionKind::Start => (GREEN, "start"),
        ActionKind::Restart => (YELLOW, "restart"),
        ActionKind::Scale => (YELLOW, "scale"),
        ActionKind::Stop => (RED, "stop"),
        ActionKind::Reconfigure => (Style::new(), "reconfigure"),
    };
    write!(out, "    {style}{kind}{style:#} {}", plain(&a.target))?;
    if a.reason.is_empty() {
        writeln!(out)
    } else {
        writeln!(out, " ({})", plain(&a.reason))
    }
}

/// `text` made safe for the terminal, its later lines under `indent`.
fn indented(text: &str, indent: &str) -> String {
    plain(text).replace('\n', &format!("\n{indent}"))
}
