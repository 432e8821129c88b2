//! `/etc/hostd/hostd.toml` once hostctl wrote it: the declared text under
//! one header line that says where it came from and that edits on the host
//! are overwritten by the next apply.

use std::path::Path;
use std::sync::Arc;

use hostd_api::host_config::WRITTEN_BY;

use super::{HostConfigError, Loaded};
use crate::config::{Config, ConfigError};

/// The header line for a text from `source`.
fn header(source: &str) -> String {
    format!("{WRITTEN_BY} from {source}; edits here are overwritten by the next apply.\n")
}

/// The declared text and its source, from the file's contents.
pub fn split(contents: &str) -> (&str, Option<&str>) {
    let Some(rest) = contents.strip_prefix(WRITTEN_BY) else {
        return (contents, None);
    };
    let (line, text) = rest.split_once('\n').unwrap_or((rest, ""));
    let source = line
        .strip_prefix(" from ")
        .and_then(|l| l.split_once(';'))
        .map(|(s, _)| s)
        .filter(|s| is_plain_source(s));
    (text, source)
}

/// What the file holds for `loaded`.
pub fn contents(loaded: &Loaded) -> String {
    match &loaded.source {
        Some(source) => format!("{}{}", header(source), loaded.text),
        None => loaded.text.clone(),
    }
}

/// A path in the operator's repository as it may appear in the header and
/// in errors: relative, printable, short, without `;`.
pub fn is_plain_source(source: &str) -> bool {
    !source.is_empty()
        && source.len() <= 256
        && !source.starts_with('/')
        && source.chars().all(|c| !c.is_control() && c != ';')
}

/// The file on the host, checked; its errors name the host's path.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let contents = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config = Config::parse(path, &contents)?;
    let (text, source) = split(&contents);
    Ok(Loaded {
        text: text.to_owned(),
        source: source.map(str::to_owned),
        config: Arc::new(config),
    })
}

/// Replaces the file atomically (readable by root only: it names secrets'
/// parameters and may hold a PostgreSQL address with a password).
pub fn write(path: &Path, loaded: &Loaded) -> Result<(), HostConfigError> {
    crate::fsutil::write_atomically(path, contents(loaded).as_bytes(), 0o600).map_err(|source| {
        HostConfigError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips_and_hand_written_files_have_none() {
        let loaded = Loaded {
            text: "[health]\n".into(),
            source: Some("hostd/production.toml".into()),
            config: Arc::new(Config::parse(Path::new("x"), "").unwrap_or_else(|_| unreachable!())),
        };
        let written = contents(&loaded);
        assert!(written.starts_with(WRITTEN_BY));
        assert_eq!(
            split(&written),
            ("[health]\n", Some("hostd/production.toml"))
        );
        assert_eq!(split("[health]\n"), ("[health]\n", None));
    }

    #[test]
    fn sources_are_relative_printable_paths() {
        assert!(is_plain_source("hostd/production.toml"));
        assert!(!is_plain_source("/etc/passwd"));
        assert!(!is_plain_source("a;b"));
        assert!(!is_plain_source("a\nb"));
        assert!(!is_plain_source(""));
    }
}
