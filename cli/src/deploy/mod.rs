//! `hostctl deploy` (issue 6, being built). So far: what version a deploy
//! is called.

pub mod artifact;
pub mod version;

pub use version::{VersionError, resolve};
