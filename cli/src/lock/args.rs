//! Raw arguments of `lock status|release`.

use clap::Subcommand;

use crate::flags::ReadArgs;

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Who holds each host's operations lock, since when, for what
    Status(ReadArgs),
    /// Release a host's lock: refused while hostd runs the operation
    /// holding it (the lock lives in hostd, so no dead process can hold
    /// it); clears what hostd's recovery reported
    Release(ReadArgs),
}
