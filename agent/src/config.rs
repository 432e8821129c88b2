//! hostd.toml: parsed strictly, so a typo is an error at start rather than a
//! silently ignored setting. Every error names the file, line and key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/hostd/hostd.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path:line: key: message`, the shape editors and operators jump to.
    #[error("{path}:{line}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub control: ControlConfig,
    /// Keyed by the name operators use (`postgresql`, `redis`, `api`).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default = "default_health_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_check_interval")]
    pub check_interval: CheckInterval,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            listen: default_health_listen(),
            check_interval: default_check_interval(),
        }
    }
}

fn default_health_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7780))
}

fn default_check_interval() -> CheckInterval {
    CheckInterval(Duration::from_secs(5))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    #[serde(default = "default_control_socket")]
    pub socket: PathBuf,
    /// Group allowed to open the socket besides root. None: root only.
    #[serde(default)]
    pub group: Option<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: default_control_socket(),
            group: None,
        }
    }
}

fn default_control_socket() -> PathBuf {
    PathBuf::from(hostd_api::DEFAULT_CONTROL_SOCKET)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub unit: UnitName,
}

/// How often health checks run: between 1 s and 1 h, written as `5s`, `1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CheckInterval(pub Duration);

impl TryFrom<String> for CheckInterval {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let d = humantime::parse_duration(&s)
            .map_err(|e| format!("`{s}` is not a duration like `5s` or `1m`: {e}"))?;
        if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
            return Err(format!("`{s}` is out of range (1s to 1h)"));
        }
        Ok(Self(d))
    }
}

/// A systemd unit name, checked the way systemd checks them (allowed
/// characters, a known suffix) so a typo fails at load, not at first use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct UnitName(String);

const UNIT_SUFFIXES: &[&str] = &[
    ".service", ".socket", ".target", ".timer", ".mount", ".path", ".slice", ".scope",
];

impl TryFrom<String> for UnitName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let valid_chars = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c));
        let has_suffix = UNIT_SUFFIXES
            .iter()
            .any(|suf| s.len() > suf.len() && s.ends_with(suf));
        if s.len() > 255 || !valid_chars || !has_suffix {
            return Err(format!(
                "`{s}` is not a systemd unit name (like `redis-server.service`; suffixes: {})",
                UNIT_SUFFIXES.join(" ")
            ));
        }
        Ok(Self(s))
    }
}

impl UnitName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// `path` is only used to name the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
            ConfigError::Invalid {
                path: path.to_owned(),
                line: span.map_or(1, |s| line_of(text, s.start)),
                key,
                message,
            }
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| invalid(e.span(), "(syntax)".into(), e.message().to_owned()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().to_owned();
            invalid(inner.span(), key_of(&path), message)
        })
    }
}

/// serde_path_to_error already ends the path with an unknown field's name;
/// `.` is what it says for the top level of a syntax-level problem.
fn key_of(path: &str) -> String {
    match path {
        "." | "" => "(top level)".to_owned(),
        p => p.to_owned(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/hostd/hostd.toml"), text)
    }

    fn error_text(text: &str) -> String {
        match parse(text) {
            Ok(c) => format!("unexpectedly valid: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn shipped_default_config_is_valid() -> Result<(), ConfigError> {
        let c = parse(include_str!("../../packer/files/hostd.toml"))?;
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.control.group.as_deref(), Some("hostd"));
        Ok(())
    }

    #[test]
    fn empty_config_gets_defaults() -> Result<(), ConfigError> {
        let c = parse("")?;
        assert_eq!(c.health.listen.port(), 7780);
        assert_eq!(c.health.check_interval.0, Duration::from_secs(5));
        assert!(c.services.is_empty());
        Ok(())
    }

    #[test]
    fn unknown_key_names_file_line_and_full_key() {
        let e = error_text("[health]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n");
        assert!(
            e.starts_with("/etc/hostd/hostd.toml:3: key `health.lisen`"),
            "{e}"
        );
        assert!(e.contains("expected `listen` or `check_interval`"), "{e}");
    }

    #[test]
    fn unknown_top_level_table_is_named() {
        let e = error_text("\n[helth]\n");
        assert!(e.contains(":2: key `helth`"), "{e}");
    }

    #[test]
    fn bad_address_names_the_key_and_line() {
        let e = error_text("[health]\n\nlisten = \"localhost\"\n");
        assert!(e.contains(":3: key `health.listen`"), "{e}");
    }

    #[test]
    fn bad_unit_name_is_rejected_with_the_service_key() {
        let e = error_text("[services.redis]\nunit = \"redis server\"\n");
        assert!(e.contains(":2: key `services.redis.unit`"), "{e}");
        assert!(e.contains("not a systemd unit name"), "{e}");
    }

    #[test]
    fn interval_out_of_range_is_rejected() {
        let e = error_text("[health]\ncheck_interval = \"10ms\"\n");
        assert!(e.contains("key `health.check_interval`"), "{e}");
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = error_text("[health]\nlisten = \n");
        assert!(e.contains(":2:"), "{e}");
    }

    #[test]
    fn unit_names_follow_systemd_rules() {
        assert!(UnitName::try_from("postgresql@15-main.service".to_owned()).is_ok());
        assert!(UnitName::try_from("api@.service".to_owned()).is_ok());
        assert!(UnitName::try_from(".service".to_owned()).is_err());
        assert!(UnitName::try_from("redis".to_owned()).is_err());
        assert!(UnitName::try_from("a/b.service".to_owned()).is_err());
    }
}
