//! Times as both sides write them: RFC 3339, UTC, whole seconds.

use std::time::{Duration, SystemTime};

/// Past the year 9999 (systemd's "infinity", u64::MAX µs, is such a time)
/// RFC 3339 has no form: those show as its last second rather than
/// panicking, which `to_string` on humantime's formatter would.
pub fn rfc3339(t: SystemTime) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    match write!(s, "{}", humantime::format_rfc3339_seconds(t)) {
        Ok(()) => s,
        Err(_) => "9999-12-31T23:59:59Z".to_owned(),
    }
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// Milliseconds since the epoch (0 before it, saturating far after).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A systemd timestamp (µs since the epoch).
pub fn rfc3339_usec(usec: u64) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_in_utc() {
        assert_eq!(rfc3339_usec(1_700_000_000_999_999), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn systemds_infinity_is_the_last_second_not_a_panic() {
        assert_eq!(rfc3339_usec(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
