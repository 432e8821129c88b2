use std::process::ExitCode;

use clap::Parser;
use hostctl::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    hostctl::logging::init(cli.global.verbose);
    match hostctl::run(cli).await {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            let hint = e.hint();
            // anyhow's alternate form prints the whole cause chain on one line.
            anstream::eprintln!("error: {:#}", anyhow::Error::from(e));
            if let Some(hint) = hint {
                anstream::eprintln!("hint: {hint}");
            }
            code
        }
    }
}
