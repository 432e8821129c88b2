//! Raw arguments of `releases`.

use clap::Args;

use crate::flags::ReadArgs;
use crate::parse::parse_service_name;

#[derive(Debug, Args)]
pub struct ReleasesArgs {
    /// The service [default: the only [services.NAME] in hostctl.toml]
    #[arg(long, value_name = "SERVICE", value_parser = parse_service_name)]
    pub service: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}
