//! Deploys (issue 6, being built): releases under `<app>/releases/<version>/`
//! with a `current` link. So far: unpacking an artifact safely, the
//! release directory with its atomic switch and pruning, and the ledger.

pub mod ledger;
pub mod releases;
pub mod unpack;

pub use ledger::{Ledger, LedgerEntry, LedgerError};
pub use releases::{ReleaseError, Releases};
pub use unpack::{UnpackError, unpack};
