//! Logs go to stderr so stdout stays data (`--json` can be piped).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `verbose` counts `-v` flags. Sandbox progress shows at the default level
/// because `sandbox up` runs for minutes and silence looks like a hang.
/// RUST_LOG, when set, wins.
pub fn init(verbose: u8) {
    let directives = match verbose {
        0 => "warn,hostctl::sandbox=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(verbose >= 2)
        .without_time()
        .try_init();
}
