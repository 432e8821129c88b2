//! demo-backend: a small but real API for the sandbox, the tests and deploy
//! drills. It stores notes in PostgreSQL, counts them in Redis, answers
//! `/health` only when both answer, takes its listening socket from systemd
//! when socket-activated (so a restart refuses no connection), and drains
//! in-flight requests on SIGTERM.
//!
//! Environment: `DATABASE_URL` (libpq key=value or URL), `REDIS_URL` (each
//! read from `$CREDENTIALS_DIRECTORY/database_url` / `redis_url` instead
//! when that file exists),
//! `LISTEN_ADDR` (when not socket-activated; default 127.0.0.1:8080).
//! The version it reports: `VERSION` in the working directory (a release
//! directory, as `hostctl deploy` packs it), else `DEMO_BACKEND_VERSION` at
//! build time, else the crate's. Feature `broken` makes /health fail.

mod app;
mod drain;

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo-backend: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::serve(app::Settings::from_env())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
