//! Reading the journal of the units hostd ships, from a cursor, in
//! bounded pieces: journalctl is run once per round rather than followed
//! (`--follow` needs inotify, which hostd's confinement leaves it without),
//! and stopped after [`MAX_ENTRIES`] so a backlog is read over rounds.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::CloudWatchError;
use super::spool::Record;

/// Entries read (and held in memory) at once: 100 lines a second at a 5 s
/// interval is 500; a backlog is read in several.
pub const MAX_ENTRIES: usize = 500;
/// Longer messages are cut: CloudWatch takes up to 256 KiB an event,
/// but a line that long is a blob, not a log line.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// A journalctl line longer than this is not read (MESSAGE is cut after
/// parsing, so this only bounds what one entry may cost).
const MAX_ENTRY_LINE: usize = 1 << 20;

/// Entries after `cursor` (or, with none, from `since`) of `units`
/// (journalctl `-u` patterns), and the cursor of the last one read.
pub async fn read(
    units: &[String],
    cursor: Option<&str>,
    since: &str,
) -> Result<(Vec<Record>, Option<String>), CloudWatchError> {
    let mut cmd = tokio::process::Command::new("journalctl");
    cmd.args([
        "--no-pager",
        "--output=json",
        "--output-fields=MESSAGE,_SYSTEMD_UNIT,UNIT,_PID",
    ]);
    match cursor {
        Some(c) => cmd.arg(format!("--after-cursor={c}")),
        None => cmd.arg(format!("--since={since}")),
    };
    for u in units {
        cmd.arg(format!("--unit={u}"));
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(CloudWatchError::Journal)?;
    let Some(stdout) = child.stdout.take() else {
        return Err(CloudWatchError::JournalFailed("no stdout".into()));
    };
    let mut lines = BufReader::new(stdout);
    let mut records = Vec::new();
    let mut last = cursor.map(str::to_owned);
    let mut line = Vec::new();
    while records.len() < MAX_ENTRIES {
        line.clear();
        let n = (&mut lines)
            .take(MAX_ENTRY_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(CloudWatchError::Journal)?;
        if n == 0 {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry>(&line) else {
            continue;
        };
        let cursor = entry.cursor.clone();
        if let Some(r) = record(entry) {
            records.push(r);
        }
        last = Some(cursor);
    }
    if records.len() < MAX_ENTRIES {
        let out = child
            .wait_with_output()
            .await
            .map_err(CloudWatchError::Journal)?;
        if !out.status.success() && records.is_empty() {
            return Err(CloudWatchError::JournalFailed(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
    }
    Ok((records, last))
}

/// The fields of a `journalctl --output=json` entry that are read (the
/// rest is not even parsed into values).
#[derive(serde::Deserialize)]
pub struct Entry {
    #[serde(rename = "__CURSOR")]
    cursor: String,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<String>,
    #[serde(rename = "_SYSTEMD_UNIT")]
    own_unit: Option<String>,
    #[serde(rename = "UNIT")]
    about_unit: Option<String>,
    /// A string, or an array of bytes when it is not UTF-8.
    #[serde(rename = "MESSAGE")]
    message: Option<Message>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Message {
    Text(String),
    Bytes(Vec<u8>),
    Other(serde::de::IgnoredAny),
}

/// The record of one entry: its unit (the process's, or for PID 1's
/// messages the unit they are about), its time and message (lossy UTF-8
/// when the journal holds bytes; cut), and its cursor.
pub fn record(e: Entry) -> Option<Record> {
    let own = e.own_unit.filter(|u| u != "init.scope");
    let unit = own.or(e.about_unit)?;
    let micros: i64 = e.realtime?.parse().ok()?;
    let mut message = match e.message? {
        Message::Text(s) => s,
        Message::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
        Message::Other(_) => return None,
    };
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    Some(Record {
        unit,
        timestamp_ms: micros / 1000,
        message,
        cursor: Some(e.cursor),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Option<Record> {
        let with_cursor = json.replacen('{', r#"{"__CURSOR":"c1","#, 1);
        record(serde_json::from_str(&with_cursor).ok()?)
    }

    #[test]
    fn entries_become_records_of_their_unit() {
        let own = parse(
            r#"{"__REALTIME_TIMESTAMP":"1700000000123456","_SYSTEMD_UNIT":"api@1.service","MESSAGE":"GET / 200"}"#,
        );
        assert_eq!(
            own,
            Some(Record {
                unit: "api@1.service".into(),
                timestamp_ms: 1_700_000_000_123,
                message: "GET / 200".into(),
                cursor: Some("c1".into())
            })
        );
        let pid1 = parse(
            r#"{"__REALTIME_TIMESTAMP":"1","_SYSTEMD_UNIT":"init.scope","UNIT":"api@1.service","MESSAGE":"Started api@1.service."}"#,
        );
        assert_eq!(pid1.map(|r| r.unit), Some("api@1.service".into()));
        let bytes = parse(
            r#"{"__REALTIME_TIMESTAMP":"1","_SYSTEMD_UNIT":"x.service","MESSAGE":[104,105,255]}"#,
        );
        assert!(bytes.is_some_and(|r| r.message.starts_with("hi")));
        assert_eq!(
            parse(r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"no unit"}"#),
            None
        );
        let long = format!(
            r#"{{"__REALTIME_TIMESTAMP":"1","_SYSTEMD_UNIT":"x.service","MESSAGE":"{}"}}"#,
            "é".repeat(MAX_MESSAGE)
        );
        assert!(parse(&long).is_some_and(|r| r.message.len() <= MAX_MESSAGE));
    }
}
