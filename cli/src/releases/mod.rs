//! `hostctl releases`: the releases on each host and the ledger of its
//! deploys and rollbacks, every host at once.

pub mod args;
mod render;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use hostd_api::{API_PREFIX, ReleasesList};
use hyper::Method;

use crate::flags::GlobalArgs;
use crate::fleet::{Answer, ReadError};
use crate::output;
use crate::targets::{ReadSettings, TargetError};
use crate::transport::Transport;
use args::ReleasesArgs;

/// Validated settings for one `releases`.
#[derive(Debug, Clone)]
pub struct ReleasesSettings {
    pub read: ReadSettings,
    /// The service's unit, as hostd names its releases.
    pub unit: String,
}

impl ReleasesSettings {
    pub fn resolve(a: &ReleasesArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, ReadError> {
        let (config, read) = ReadSettings::resolve_with_config(&a.read, global, cwd)?;
        let service = config.pick_service(a.service.as_deref());
        let unit = service.map_err(TargetError::from)?.unit.clone();
        Ok(Self { read, unit })
    }
}

/// `hostctl releases`: exit 1 when a host did not answer.
pub async fn run(a: &ReleasesArgs, global: &GlobalArgs, cwd: &Path) -> Result<ExitCode, ReadError> {
    let settings = ReleasesSettings::resolve(a, global, cwd)?;
    let transport = Transport::system()?;
    run_with(&transport, &settings, &mut anstream::stdout().lock()).await
}

/// [`run`] with the transport and output given, for tests.
pub async fn run_with(
    transport: &Transport,
    s: &ReleasesSettings,
    out: &mut impl Write,
) -> Result<ExitCode, ReadError> {
    let path = format!("{API_PREFIX}/releases/{}", s.unit);
    let (hosts, timeout) = (&s.read.targets.hosts, s.read.timeout);
    let answers =
        Answer::<ReleasesList>::from_all(transport, hosts, Method::GET, &path, timeout).await;
    output::answers(out, s.read.json, &answers, render::releases).map_err(ReadError::Output)?;
    Ok(Answer::exit_code(&answers))
}
