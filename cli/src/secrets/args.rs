//! Raw arguments of `secrets list|sync`.

use clap::Subcommand;

use crate::flags::ActionArgs;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Names, versions, last-modified dates and the services using each
    /// parameter, per host; never a value
    List(ActionArgs),
    /// Re-read SSM now, one host at a time; only services whose secrets
    /// changed restart (instances one at a time). Exit 1 when a host's
    /// fetch or a restart failed
    Sync(ActionArgs),
}
