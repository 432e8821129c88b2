//! Bounds on the numbers a request carries. hostd refuses a request
//! beyond them (422) instead of computing a deadline that overflows;
//! hostctl can check them before it connects.

/// Longest an operation may wait for the one running (`--lock-wait`).
pub const MAX_LOCK_WAIT_SECONDS: u64 = 24 * 60 * 60;
/// Longest one instance may take to pass its health gate.
pub const MAX_HEALTH_TIMEOUT_SECONDS: u64 = 60 * 60;
/// Longest a hook or task may run.
pub const MAX_HOOK_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;

/// A request value above its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    pub what: &'static str,
    pub value: u64,
    pub max: u64,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {} is out of range (at most {})",
            self.what, self.value, self.max
        )
    }
}

impl std::error::Error for OutOfRange {}

/// `value`, when it is at most `max`.
pub fn at_most(what: &'static str, value: u64, max: u64) -> Result<u64, OutOfRange> {
    if value > max {
        return Err(OutOfRange { what, value, max });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_above_its_bound_is_named() {
        assert_eq!(at_most("lock_wait_seconds", 5, 10), Ok(5));
        let e = at_most("lock_wait_seconds", u64::MAX, MAX_LOCK_WAIT_SECONDS);
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("lock_wait_seconds = 18446744073709551615 is out of range (at most 86400)".into())
        );
    }
}
