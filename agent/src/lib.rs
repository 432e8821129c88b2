//! hostd, the host agent. [`app::run`] is the whole daemon; main.rs only
//! parses arguments and maps errors to exit codes. README.md's
//! "Architecture" section draws the subsystems and their channels.

pub mod app;
pub mod aws;
pub mod backup;
pub mod checks;
pub mod cloudwatch;
pub mod config;
pub mod deploy;
pub mod desired;
pub mod dial;
pub mod front;
pub mod fsutil;
pub mod health;
pub mod host;
pub mod host_config;
pub mod http;
pub mod jobs;
pub mod lifetime;
pub mod manager;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod postgres;
#[cfg(test)]
mod request_strategies;
pub mod restore;
pub mod secrets;
pub mod state_file;
pub mod systemd;
pub mod units;
pub mod upgrade;

pub use app::{RunError, run};

/// Logs to stderr, `RUST_LOG` or info; the same for hostd and its front.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Under systemd the journal stamps every line; a second timestamp is noise.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.init();
    }
}

/// The async runtime of hostd and of its front: two workers are enough
/// for either, and bound their threads on larger instances.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// 64 random bits, for names that must not repeat (RandomState is seeded
/// from the OS).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A random delay below `spread` (whole milliseconds; zero for a zero
/// spread), to keep hosts started together from acting in the same second.
/// RandomState is seeded from the OS: random enough for spreading, and no
/// extra crate.
pub fn random_delay(spread: std::time::Duration) -> std::time::Duration {
    let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
    if spread_ms == 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_millis(random_u64() % spread_ms)
}
