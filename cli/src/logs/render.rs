//! Output of `logs`: each line as journalctl wrote it, after a prefix
//! naming its host when there are several.

use std::io::Write;

use anstyle::{AnsiColor, Style};

/// The lines of every host's journal on one output.
pub(super) struct Journal<'w, W: Write> {
    out: &'w mut W,
    prefixes: Vec<String>,
}

impl<'w, W: Write> Journal<'w, W> {
    pub(super) fn new(out: &'w mut W, hosts: &[String]) -> Self {
        Self {
            out,
            prefixes: prefixes(hosts),
        }
    }

    /// A line of the journal of the `host`-th host, written whole.
    pub(super) fn line(&mut self, host: usize, line: &[u8]) -> std::io::Result<()> {
        let prefix = self.prefixes.get(host).map_or("", String::as_str);
        self.out.write_all(prefix.as_bytes())?;
        self.out.write_all(line)?;
        self.out.write_all(b"\n")
    }

    pub(super) fn end(self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// `host | ` in a colour per host, padded to one width, when there is more
/// than one host; nothing for a single host, so its output is journalctl's.
pub(super) fn prefixes(hosts: &[String]) -> Vec<String> {
    const COLORS: [AnsiColor; 5] = [
        AnsiColor::Cyan,
        AnsiColor::Magenta,
        AnsiColor::Blue,
        AnsiColor::Yellow,
        AnsiColor::Green,
    ];
    if hosts.len() < 2 {
        return vec![String::new(); hosts.len()];
    }
    let width = hosts.iter().map(String::len).max().unwrap_or(0);
    hosts
        .iter()
        .zip(COLORS.iter().cycle())
        .map(|(h, c)| {
            let style = Style::new().fg_color(Some((*c).into()));
            format!("{style}{h:<width$}{style:#} | ")
        })
        .collect()
}
