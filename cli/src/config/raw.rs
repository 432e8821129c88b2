//! hostctl.toml exactly as written. Everything here mirrors the file so that
//! `deny_unknown_fields` and serde_path_to_error can point at the offending
//! key; meaning is given to it in `config::resolve`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub default_environment: Option<Spanned<String>>,
    #[serde(default)]
    pub ssh: RawSsh,
    #[serde(default)]
    pub environments: BTreeMap<String, Spanned<RawEnvironment>>,
    #[serde(default)]
    pub hosts: BTreeMap<String, Spanned<RawHost>>,
    #[serde(default)]
    pub services: BTreeMap<String, Spanned<RawService>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsh {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "humantime_opt")]
    pub connect_timeout: Option<Duration>,
    pub options: Option<Vec<String>>,
    pub hostd_path: Option<String>,
    pub root_hostd_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvironment {
    pub hosts: Spanned<Vec<Spanned<String>>>,
    pub hostd_config: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub options: Option<Vec<String>>,
    pub hostd_config: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub build: Option<String>,
    pub artifact: PathBuf,
    #[serde(default)]
    pub unit: Option<String>,
    pub health_path: Option<String>,
    #[serde(default, deserialize_with = "humantime_opt")]
    pub health_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "humantime_opt")]
    pub hook_timeout: Option<Duration>,
    pub keep: Option<u32>,
    #[serde(default)]
    pub hooks: RawHooks,
    #[serde(default)]
    pub tasks: BTreeMap<String, Spanned<RawTask>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub command: String,
    #[serde(default)]
    pub pre_switch: bool,
    #[serde(default, deserialize_with = "humantime_opt")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    pub pre_switch: Option<String>,
    pub post_deploy: Option<String>,
}

fn humantime_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map(Some).map_err(|e| {
        serde::de::Error::custom(format!("{e} in {s:?} (write e.g. \"5s\" or \"1m 30s\")"))
    })
}

/// A parse failure located in the file: what `ConfigError::Parse` needs.
#[derive(Debug)]
pub(super) struct Located {
    pub line: Option<usize>,
    /// Dotted path of the offending key; empty when the error is syntactic.
    pub key: String,
    pub message: String,
}

pub(super) fn parse(text: &str) -> Result<RawConfig, Located> {
    let de = toml::Deserializer::parse(text).map_err(|e| Located {
        line: e.span().map(|s| line_of(text, s.start)),
        // A duplicate key's span is the key itself.
        key: e
            .span()
            .and_then(|s| hostd_api::toml_text::key_at(text, s))
            .unwrap_or_default(),
        message: e.message().trim_end().to_owned(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().trim_end().to_owned();
        Located {
            line: inner.span().map(|s| line_of(text, s.start)),
            key: key_of(&path, &message),
            message,
        }
    })
}

/// serde_path_to_error stops at the table holding an unknown field, but the
/// reader wants the full key they mistyped, so take it from serde's message.
fn key_of(path: &str, message: &str) -> String {
    // toml::Spanned shows up as a private pseudo-field; it is no user key.
    let parent = path
        .split('.')
        .filter(|seg| !seg.is_empty() && !seg.starts_with("$__"))
        .collect::<Vec<_>>()
        .join(".");
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    match unknown {
        Some(field) if parent.is_empty() => field.to_owned(),
        Some(field) if !parent.ends_with(field) => format!("{parent}.{field}"),
        _ => parent,
    }
}

/// 1-based line number of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
