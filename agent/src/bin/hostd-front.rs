//! hostd's front on its own (what hostd-front.service starts): the public
//! port of each app on a port, forwarding to its instances as hostd routes.
//! A binary of its own, a tenth of hostd's size, so the long-running
//! process maps only the front's code (its resident memory is mostly
//! code pages).

use std::process::ExitCode;

fn main() -> ExitCode {
    // Configured by its unit and by hostd only; `--version` is for the
    // upgrade's check that a new build runs here.
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("hostd-front {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    hostd::init_logging();
    let runtime = match hostd::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hostd-front: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let routes = std::path::Path::new(hostd::front::client::ROUTES_FILE);
    let control = std::path::Path::new(hostd::front::client::CONTROL_SOCKET);
    runtime.block_on(async {
        match hostd::front::run(routes, control).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{}", hostd_api::error_chain(&e));
                ExitCode::FAILURE
            }
        }
    })
}
