//! The rules for values that come from the operator, on the command line
//! (clap's value parsers) or in hostctl.toml: names that end up in URL
//! paths, remote command lines and systemd unit names, and durations.
//! A leaf: it knows nothing of commands or configuration.

use std::time::Duration;

/// A name that breaks hostd's naming rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is no {what} name: {what} names are 1 to 32 of a-z, 0-9 and -")]
pub struct NameError {
    pub given: String,
    /// `service`, `task` or `job`.
    pub what: &'static str,
}

/// A duration the operator wrote that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    #[error("must be more than zero")]
    Zero,
    /// humantime's reason is the message itself, as clap shows the message
    /// alone; `example` is what to write instead.
    #[error("{reason} (write e.g. {example})")]
    Unreadable {
        reason: humantime::DurationError,
        example: &'static str,
    },
}

/// hostd's rule for service names (hostd.toml rejects anything else). Checked
/// here too because the name goes into a URL path and a remote command line,
/// and a typo is better caught before any connection.
pub fn parse_service_name(s: &str) -> Result<String, NameError> {
    parse_name(s, "service")
}

/// Task names (hostctl.toml) and job names (hostd.toml) follow the service
/// name rule: they go into URL paths and systemd unit names the same way.
pub fn parse_task_name(s: &str) -> Result<String, NameError> {
    parse_name(s, "task")
}

pub fn parse_job_name(s: &str) -> Result<String, NameError> {
    parse_name(s, "job")
}

fn parse_name(s: &str, what: &'static str) -> Result<String, NameError> {
    let valid = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(s.to_owned())
    } else {
        Err(NameError {
            given: s.to_owned(),
            what,
        })
    }
}

/// A timeout or a wait: zero would mean "give up at once".
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err(DurationError::Zero),
        Ok(d) => Ok(d),
        Err(reason) => Err(DurationError::Unreadable {
            reason,
            example: "30s or 2m",
        }),
    }
}

/// Zero is allowed here: it means "do not wait".
pub fn parse_lock_wait(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(s).map_err(|reason| DurationError::Unreadable {
        reason,
        example: "0s or 10m",
    })
}

/// Whole seconds for hostd's and ssh's second-granular settings, rounded
/// up so that "500ms" still means "wait".
pub fn seconds_rounded_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_hostd_rule() {
        assert_eq!(parse_service_name("api-2"), Ok("api-2".into()));
        for bad in ["", "Api", "a_b", "a/b", &"x".repeat(33)] {
            assert!(parse_task_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            parse_job_name("Clean").map_err(|e| e.to_string()),
            Err("\"Clean\" is no job name: job names are 1 to 32 of a-z, 0-9 and -".into())
        );
    }

    #[test]
    fn durations_say_what_to_write() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert_eq!(parse_lock_wait("0s"), Ok(Duration::ZERO));
        let said = |r: Result<Duration, DurationError>| r.err().map(|e| e.to_string());
        assert!(
            said(parse_duration("soon")).is_some_and(|m| m.ends_with("(write e.g. 30s or 2m)"))
        );
        assert!(said(parse_lock_wait("x")).is_some_and(|m| m.ends_with("(write e.g. 0s or 10m)")));
        assert_eq!(seconds_rounded_up(Duration::from_millis(1500)), 2);
        assert_eq!(seconds_rounded_up(Duration::from_secs(3)), 3);
    }
}
