//! Times as both sides write them: RFC 3339, UTC, whole seconds.

use std::time::{Duration, SystemTime};

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
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
}
