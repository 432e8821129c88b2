//! `[cloudwatch]`: hostd ships the journals of what it runs, and its own
//! metrics as Embedded Metric Format events, to CloudWatch Logs itself.

use serde::Deserialize;

use super::{AwsRegion, EndpointUrl, HumanDuration};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchConfig {
    /// One group per environment: `/hostd/production`.
    pub log_group: LogGroupName,
    /// The stream of each unit on each host.
    #[serde(default = "default_stream")]
    pub stream: StreamTemplate,
    /// Ship `[metrics]`' figures as EMF events every `metrics.emf_interval`
    /// to the stream whose `{unit}` is `metrics`.
    #[serde(default = "yes")]
    pub metrics: bool,
    /// Units shipped beyond the managed services, their jobs, hooks and
    /// tasks, and hostd: journalctl `-u` patterns (`nginx.service`, `cron*`).
    #[serde(default)]
    pub units: Vec<UnitPattern>,
    /// How often the journal is read and what is new shipped.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// The backlog kept on disk while CloudWatch cannot be reached; past
    /// it the oldest lines are dropped, counted and reported.
    #[serde(default = "default_max_backlog_mib")]
    pub max_backlog_mib: u64,
    /// Shipping further behind than this makes `/health` degraded.
    #[serde(default = "default_max_lag")]
    pub max_lag: HumanDuration,
    #[serde(default)]
    pub region: Option<AwsRegion>,
    #[serde(default)]
    pub endpoint_url: Option<EndpointUrl>,
}

fn yes() -> bool {
    true
}
fn default_stream() -> StreamTemplate {
    StreamTemplate("{host}/{unit}".to_owned())
}
fn default_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn default_max_backlog_mib() -> u64 {
    64
}
fn default_max_lag() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

impl CloudWatchConfig {
    /// What `validate` checks beyond each value's own form.
    pub fn check(&self) -> Result<(), (String, String)> {
        use std::time::Duration;
        let i = self.interval.0;
        if i < Duration::from_secs(1) || i > Duration::from_secs(300) {
            return Err((
                "cloudwatch.interval".into(),
                "must be between 1s and 5m".into(),
            ));
        }
        if self.max_lag.0 < i * 2 {
            return Err((
                "cloudwatch.max_lag".into(),
                "must be at least twice cloudwatch.interval".into(),
            ));
        }
        if !(1..=10_240).contains(&self.max_backlog_mib) {
            return Err((
                "cloudwatch.max_backlog_mib".into(),
                "must be between 1 and 10240".into(),
            ));
        }
        Ok(())
    }
}

/// A CloudWatch Logs group name: 1 to 512 of `A-Z a-z 0-9 . _ - / #`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogGroupName(String);

impl LogGroupName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LogGroupName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = (1..=512).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b));
        if ok {
            Ok(Self(s))
        } else {
            Err(format!(
                "`{s}` is not a log group name (1 to 512 of A-Z a-z 0-9 . _ - / #)"
            ))
        }
    }
}

/// A stream name with `{host}` (the instance id, or the hostname off EC2)
/// and `{unit}` (the systemd unit, or `metrics`) in it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct StreamTemplate(String);

/// Longest a unit name gets in a stream name, and a host.
const LONGEST_UNIT: usize = 256;
const LONGEST_HOST: usize = 64;

impl StreamTemplate {
    pub fn render(&self, host: &str, unit: &str) -> String {
        self.0.replace("{host}", host).replace("{unit}", unit)
    }
}

impl TryFrom<String> for StreamTemplate {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if !s.contains("{unit}") {
            return Err(format!(
                "`{s}` has no {{unit}}: each unit needs a stream of its own"
            ));
        }
        let rest = s.replace("{host}", "").replace("{unit}", "");
        if rest.contains(['{', '}', ':', '*']) || rest.chars().any(char::is_control) {
            return Err(format!(
                "`{s}` may hold only {{host}} and {{unit}}, and no `:` or `*`"
            ));
        }
        let longest = rest.len()
            + LONGEST_UNIT * s.matches("{unit}").count()
            + LONGEST_HOST * s.matches("{host}").count();
        if longest > 512 {
            return Err(format!("`{s}` can make stream names over 512 bytes"));
        }
        Ok(Self(s))
    }
}

/// A journalctl `-u` pattern: a unit name, globs allowed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UnitPattern(String);

impl UnitPattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UnitPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = (1..=LONGEST_UNIT).contains(&s.len())
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@._-:*?[]\\".contains(&b));
        if ok {
            Ok(Self(s))
        } else {
            Err(format!("`{s}` is not a unit name or pattern"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_against_cloudwatch_rules() {
        assert!(LogGroupName::try_from("/hostd/production".to_owned()).is_ok());
        assert!(LogGroupName::try_from(String::new()).is_err());
        assert!(LogGroupName::try_from("a b".to_owned()).is_err());
        assert!(LogGroupName::try_from("x".repeat(513)).is_err());
        let t = StreamTemplate::try_from("{host}/{unit}".to_owned());
        assert_eq!(
            t.map(|t| t.render("i-0abc", "api@1.service")),
            Ok("i-0abc/api@1.service".to_owned())
        );
        for bad in ["{host}", "{unit}:x", "{unit}/{name}", "{unit}*"] {
            assert!(StreamTemplate::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        assert!(UnitPattern::try_from("api@*.service".to_owned()).is_ok());
        for bad in ["--all", "a b", "", "a;b"] {
            assert!(UnitPattern::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
