//! Value types of hostd.toml that check themselves while parsing, so a bad
//! value is reported at its line by serde.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// An instance count: 1 to 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "u32")]
pub struct Count(pub u32);

impl TryFrom<u32> for Count {
    type Error = String;
    fn try_from(n: u32) -> Result<Self, String> {
        if (1..=64).contains(&n) {
            Ok(Self(n))
        } else {
            Err(format!("{n} is out of range (1 to 64)"))
        }
    }
}

/// 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(try_from = "f64")]
pub struct Percent(pub f64);

impl TryFrom<f64> for Percent {
    type Error = String;
    fn try_from(p: f64) -> Result<Self, String> {
        if (0.0..=100.0).contains(&p) {
            Ok(Self(p))
        } else {
            Err(format!("{p} is not a percentage (0 to 100)"))
        }
    }
}

/// A duration written like `5s`, `1m`, `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

/// Longer durations are refused: nothing hostd waits for takes a year,
/// and a deadline past the clock's range would overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

impl TryFrom<String> for HumanDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let d = humantime::parse_duration(&s)
            .map_err(|e| format!("`{s}` is not a duration like `5s` or `1m`: {e}"))?;
        if d > MAX_DURATION {
            return Err(format!("`{s}` is out of range (at most 366 days)"));
        }
        Ok(Self(d))
    }
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
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

/// Instance numbers of the second set of an app behind the front start
/// after this (see `crate::desired`).
pub const SECOND_SET: u32 = 100;

/// The start of the name of every unit hostd writes for an app.
pub const APP_UNIT_PREFIX: &str = "hostd-app-";

impl UnitName {
    /// The template hostd writes for the app service `name`.
    pub fn app(name: &str) -> Self {
        Self(format!("{APP_UNIT_PREFIX}{name}@.service"))
    }

    /// Only between parsing and [`Config::parse`](super::Config::parse)
    /// filling it in: no loaded config holds it.
    pub(super) fn undeclared() -> Self {
        Self(String::new())
    }

    pub(super) fn is_undeclared(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `api@.service` is a template: it only runs as instances.
    pub fn is_template(&self) -> bool {
        self.0.contains("@.")
    }

    /// `api@.service` + 3 = `api@3.service`; None for a non-template.
    pub fn instance(&self, n: u32) -> Option<UnitName> {
        let (prefix, suffix) = self.0.split_once("@.")?;
        Some(UnitName(format!("{prefix}@{n}.{suffix}")))
    }

    /// The instance number of `api@3.service` when `self` is `api@.service`.
    pub fn instance_of(&self, unit: &str) -> Option<u32> {
        let (prefix, suffix) = self.0.split_once("@.")?;
        unit.strip_prefix(prefix)?
            .strip_prefix('@')?
            .strip_suffix(suffix)?
            .strip_suffix('.')?
            .parse()
            .ok()
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
