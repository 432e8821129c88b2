use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostd::config::{Config, DEFAULT_CONFIG_PATH};

/// hostd: supervises this host's services, serves health and hostctl's control API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (what hostd.service starts).
    Run {
        #[arg(long, env = "HOSTD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Check the configuration and exit: 0 when valid, 78 with the file, line
    /// and key otherwise, or naming a service whose unit is not installed.
    CheckConfig {
        #[arg(long, env = "HOSTD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Debugging: fetch `[secrets]` once with the SDK's default chain and
    /// print names, versions and the count (never values). Exit 0 when the
    /// fetch worked and every required name exists, 1 otherwise. Writes
    /// nothing to the store.
    #[command(hide = true)]
    SecretsCheck {
        #[arg(long, env = "HOSTD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Run hostd's front, as the `hostd-front` binary does (what
    /// hostd-front.service starts); kept for units written before that
    /// binary existed.
    #[command(hide = true)]
    Front {
        #[arg(long, default_value = hostd::front::client::ROUTES_FILE)]
        routes: PathBuf,
        #[arg(long, default_value = hostd::front::client::CONTROL_SOCKET)]
        control: PathBuf,
    },
    /// Join stdin/stdout to the control socket (hostctl runs this over SSH).
    DialStdio {
        #[arg(long, default_value = hostd_api::DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
}

/// sysexits' EX_CONFIG: systemd shows it, and a wrapper can tell a bad
/// config from a crash.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    hostd::init_logging();
    let runtime = match hostd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hostd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => run(&config).await,
            Command::CheckConfig { config } => check_config(&config).await,
            Command::SecretsCheck { config } => secrets_check(&config).await,
            Command::Front { routes, control } => {
                match hostd::front::run(&routes, &control).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{}", hostd_api::error_chain(&e));
                        ExitCode::FAILURE
                    }
                }
            }
            Command::DialStdio { socket } => match hostd::dial::dial_stdio(&socket).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hostd: {}", hostd_api::error_chain(&e));
                    ExitCode::FAILURE
                }
            },
        }
    });
    // Not a plain drop: that waits for blocking tasks, and dial-stdio's
    // read of stdin may block until the client closes it.
    runtime.shutdown_background();
    code
}

async fn run(path: &std::path::Path) -> ExitCode {
    let loaded = match hostd::host_config::file::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match hostd::run(loaded, path.to_owned(), shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", hostd_api::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// For the one-shot commands: the error goes to stderr, not the journal.
fn load_for_command(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("hostd: invalid configuration: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The file first, then whether systemd has (or hostd ships) every
/// service's unit: a unit nobody installed would keep the host unhealthy.
async fn check_config(path: &std::path::Path) -> ExitCode {
    let config = match load_for_command(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let systemd = match hostd::systemd::Systemd::connect().await {
        Ok(s) => s,
        Err(e) => {
            // Checking a file on a build machine: the syntax is all there is.
            eprintln!("hostd: units not checked: {e}");
            return ExitCode::SUCCESS;
        }
    };
    match hostd::units::not_installed(&config, &systemd).await {
        Ok(missing) if missing.is_empty() => ExitCode::SUCCESS,
        Ok(missing) => {
            for m in missing {
                eprintln!("hostd: invalid configuration: {}: {m}", path.display());
            }
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!(
                "hostd: cannot check the units: {}",
                hostd_api::error_chain(&e)
            );
            ExitCode::FAILURE
        }
    }
}

async fn secrets_check(path: &std::path::Path) -> ExitCode {
    use hostd::secrets::{SecretSource, SsmSource, check_required};
    let config = match load_for_command(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(secrets) = config.secrets else {
        eprintln!("hostd: {} has no [secrets] section", path.display());
        return ExitCode::FAILURE;
    };
    let prefix = secrets.path.as_str();
    let fetched = match SsmSource::from_config(&secrets).await {
        Ok(source) => source.fetch().await,
        Err(e) => Err(e),
    }
    .and_then(|set| check_required(prefix, &set, &secrets.required_all()).map(|()| set));
    match fetched {
        Ok(set) => {
            // Names and versions only: this output may end up in a ticket.
            for (name, version) in set.fingerprint() {
                println!("{name}\tversion {version}");
            }
            println!("{} parameter(s) under {prefix}", set.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hostd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop hostd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
