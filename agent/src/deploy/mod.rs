//! Deploys (issue 6, being built): releases under `<app>/releases/<version>/`
//! with a `current` link. So far: unpacking an artifact safely, and the
//! release directory with its atomic switch and pruning.

pub mod releases;
pub mod unpack;

pub use releases::{ReleaseError, Releases};
pub use unpack::{UnpackError, unpack};
