//! Component checks beyond unit states: PostgreSQL, Redis, each API
//! instance's own health endpoint, and the host's disk, memory and load.
//!
//! Each sits behind a small trait so the health round can be unit-tested
//! with fakes. Reasons are built by the probes from host, socket and error
//! kind only: a connection string may one day hold a password and must never
//! reach /health.

use std::time::Duration;

use futures_util::future::BoxFuture;

mod address;
pub mod instance;
pub mod postgres;
pub mod redis;
pub mod system;

pub use address::InstanceAddress;
pub use instance::HttpUnixProbe;
pub use postgres::PostgresProbe;
pub use redis::RedisProbe;
pub use system::{SysinfoProbe, SystemSample};

/// Why a check failed, already phrased for an operator and free of secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("{what}: no answer within {}", humantime::format_duration(*.after))]
    Timeout { what: String, after: Duration },
    #[error("{what}: the previous check is still waiting for an answer")]
    Busy { what: String },
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
}

/// A yes/no check of one dependency (PostgreSQL `SELECT 1`, Redis PING).
/// Boxed futures keep it object-safe so the checker holds `Arc<dyn Probe>`.
pub trait Probe: Send + Sync {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>>;
}

/// `GET path` over HTTP on an instance's own address; 2xx is healthy.
pub trait InstanceProbe: Send + Sync {
    fn check<'a>(
        &'a self,
        socket: &'a InstanceAddress,
        path: &'a str,
    ) -> BoxFuture<'a, Result<(), CheckError>>;
}

/// Disk, memory, load and CPU figures of the host.
pub trait SystemProbe: Send + Sync {
    fn sample(&self) -> BoxFuture<'_, SystemSample>;
}

/// A short, stable phrase for an I/O error: what the operator needs without
/// the OS's wording varying between hosts.
pub(crate) fn io_kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::NotFound => "socket not found (not running?)".into(),
        K::PermissionDenied => "permission denied".into(),
        K::TimedOut => "timed out".into(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            "connection closed".into()
        }
        other => other.to_string(),
    }
}

/// The first `io::Error` in an error's source chain, if any.
pub(crate) fn find_io<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_become_short_phrases() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(io_kind(&refused), "connection refused");
        let wrapped = std::io::Error::other(refused);
        // The outer error is an io::Error itself: its kind is Other.
        assert_eq!(io_kind(&wrapped), "other error");
    }

    #[test]
    fn timeout_reason_names_what_and_how_long() {
        let e = CheckError::Timeout {
            what: "Redis at 127.0.0.1:6379".into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(
            e.to_string(),
            "Redis at 127.0.0.1:6379: no answer within 2s"
        );
    }
}
