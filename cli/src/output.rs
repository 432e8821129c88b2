//! What the commands' output has in common: the styles, JSON documents,
//! the lines of changes made host by host, aligned columns, and how ids,
//! sizes and times are shown. Styles are always written; anstream strips
//! them when the stream is no terminal or NO_COLOR is set.

use std::io::{self, Write};
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use bytesize::ByteSize;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::fleet::{Answer, Changed, Outcome, Reply};

pub const BOLD: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();
pub const GREEN: Style = AnsiColor::Green.on_default();
pub const YELLOW: Style = AnsiColor::Yellow.on_default();
pub const RED: Style = AnsiColor::Red.on_default().bold();

/// `--json` of a command: one pretty document (an array, one object per
/// host, for most).
/// `text` with its control characters made visible (`^[` for ESC, `^?`
/// for DEL, `\u{9b}` for C1 controls): a hook, task or job prints what it
/// likes, and an escape sequence must not reach the operator's terminal
/// as one (retitle it, hide lines, rewrite the clipboard). Tabs and line
/// breaks stay.
pub fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\t' && c != '\n';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            '\u{7f}' => out.push_str("^?"),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

pub fn json<T: Serialize + ?Sized>(out: &mut impl Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// `--json` of a streamed answer (`restore`, `run`): one event a line,
/// flushed so that a pipe sees it now.
pub fn json_line<T: Serialize>(out: &mut impl Write, event: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    writeln!(out)?;
    out.flush()
}

/// `a, b`, or `none`.
pub fn names_or_none<S: AsRef<str>>(names: &[S]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The host's name and address that open its block; the rest of the line
/// is the caller's.
pub fn host_heading(out: &mut impl Write, host: &str, address: &str) -> io::Result<()> {
    write!(out, "{BOLD}{host}{BOLD:#}  {DIM}{address}{DIM:#}")
}

/// The first line of a host's block, for every change made host by host
/// (`scale`, `restart`, `secrets sync`, `backup now`).
pub fn host_line<T>(out: &mut impl Write, h: &Changed<T>) -> io::Result<()> {
    let (style, label) = match h.outcome {
        Outcome::Done => (GREEN, "done"),
        Outcome::Failed => (RED, "failed"),
        Outcome::Unfollowed => (YELLOW, "stopped following"),
        Outcome::NotTouched => (DIM, "not touched"),
    };
    host_heading(out, &h.host, &h.address)?;
    writeln!(out, "  {style}{label}{style:#}")
}

/// One closing line answering "where did it happen, where not?", for
/// every change made host by host.
pub fn summary<T>(
    out: &mut impl Write,
    environment: &str,
    what: &str,
    hosts: &[Changed<T>],
) -> io::Result<()> {
    let names = |o: Outcome| names_or_none(&Changed::hosts(hosts, o));
    if hosts.iter().all(|h| h.outcome == Outcome::Done) {
        writeln!(
            out,
            "{GREEN}{environment}: {what} done on {} host(s){GREEN:#}",
            hosts.len()
        )
    } else if !Changed::hosts(hosts, Outcome::Unfollowed).is_empty()
        && Changed::hosts(hosts, Outcome::Failed).is_empty()
    {
        writeln!(
            out,
            "{YELLOW}{environment}: stopped following {what} on {}; it may still be running{YELLOW:#}",
            names(Outcome::Unfollowed)
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

/// A host's block when it gave no answer: its error in red, indented.
pub fn no_answer(out: &mut impl Write, indent: &str, error: Option<&str>) -> io::Result<()> {
    writeln!(out, "{indent}{RED}{}{RED:#}", error.unwrap_or("no answer"))
}

/// Every host's answer to a read (`backups`, `secrets list`): the JSON
/// array, or per host its name and address, then `answer` writing the
/// rest of the line and what follows, or the host's error.
pub fn replies<W: Write, T: Serialize>(
    out: &mut W,
    json: bool,
    replies: &[Reply<T>],
    mut answer: impl FnMut(&mut W, &T) -> io::Result<()>,
) -> io::Result<()> {
    if json {
        return self::json(out, replies);
    }
    for r in replies {
        host_heading(out, &r.host, &r.address)?;
        match &r.answer {
            Some(a) => answer(out, a)?,
            None => no_answer(out, "  ", r.error.as_deref())?,
        }
    }
    Ok(())
}

/// Every host's answer to a read (`jobs`, `releases`, `lock`): the JSON
/// array, or `each` answer's block in turn.
pub fn answers<W: Write, T: Serialize>(
    out: &mut W,
    json: bool,
    answers: &[Answer<T>],
    mut each: impl FnMut(&mut W, &Answer<T>) -> io::Result<()>,
) -> io::Result<()> {
    if json {
        return self::json(out, answers);
    }
    answers.iter().try_for_each(|a| each(out, a))
}

/// Rows under a dim header, indented, each column as wide as its widest
/// cell; columns from `right` on are right-aligned so that magnitudes line
/// up.
pub fn columns<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
    right: usize,
) -> io::Result<()> {
    columns_with(out, header, rows, right, |_, _| Ok(()))
}

/// [`columns`], with `under(out, i)` writing what goes below row `i` (a
/// note that does not fit a column).
pub fn columns_with<W: Write, const N: usize>(
    out: &mut W,
    header: [&str; N],
    rows: &[[String; N]],
    right: usize,
    mut under: impl FnMut(&mut W, usize) -> io::Result<()>,
) -> io::Result<()> {
    let header = header.map(str::to_owned);
    let mut widths = [0; N];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String; N]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i >= right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        format!("    {}", cells.join("  "))
    };
    writeln!(out, "{DIM}{}{DIM:#}", line(&header))?;
    for (i, row) in rows.iter().enumerate() {
        writeln!(out, "{}", line(row).trim_end())?;
        under(out, i)?;
    }
    Ok(())
}

/// The bar of an artifact's upload to `host` on stderr, or a hidden one
/// when nobody watches.
pub fn upload_bar(host: &str, bytes: u64, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} upload {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(host.to_owned());
    bar
}

/// restic's convention: 8 hex digits are enough to tell snapshots apart.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `1.2 GiB`.
pub fn size(bytes: u64) -> String {
    ByteSize(bytes).to_string()
}

/// Whole seconds from one RFC 3339 time to another, as hostd sends them.
pub fn between(started: &str, finished: &str) -> Option<Duration> {
    let started = humantime::parse_rfc3339_weak(started).ok()?;
    let finished = humantime::parse_rfc3339_weak(finished).ok()?;
    let d = finished.duration_since(started).ok()?;
    Some(Duration::from_secs(d.as_secs()))
}

#[cfg(test)]
mod plain_tests {
    use super::plain;

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        assert_eq!(plain("plain\ttext"), "plain\ttext");
        assert_eq!(
            plain("\u{1b}]0;owned\u{7}\u{1b}[2Jgone\u{7f}\u{9b}31m"),
            "^[]0;owned^G^[[2Jgone^?\\u{9b}31m"
        );
    }
}
