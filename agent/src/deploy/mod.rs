//! Deploys (issue 6, being built): releases under `<app>/releases/<version>/`
//! with a `current` link. So far: unpacking an artifact safely.

pub mod unpack;

pub use unpack::{UnpackError, unpack};
