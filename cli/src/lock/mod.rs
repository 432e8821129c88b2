//! `hostctl lock status|release`: who holds each host's operations lock,
//! or its release; every host at once.

pub mod args;
mod render;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use hostd_api::{API_PREFIX, LockStatus};
use hyper::Method;

use crate::flags::GlobalArgs;
use crate::fleet::{Answer, ReadError};
use crate::output;
use crate::targets::{ReadSettings, TargetError};
use crate::transport::Transport;
use args::LockCommand;

/// Validated settings for one `lock status|release`.
#[derive(Debug, Clone)]
pub struct LockSettings {
    pub read: ReadSettings,
    /// `release`: hostd refuses while the operation holding it runs.
    pub release: bool,
}

impl LockSettings {
    pub fn resolve(
        cmd: &LockCommand,
        global: &GlobalArgs,
        cwd: &Path,
    ) -> Result<Self, TargetError> {
        let (LockCommand::Status(a) | LockCommand::Release(a)) = cmd;
        Ok(Self {
            read: ReadSettings::resolve(a, global, cwd)?,
            release: matches!(cmd, LockCommand::Release(_)),
        })
    }
}

/// `hostctl lock status|release`: exit 1 when a host did not answer.
pub async fn run(
    cmd: &LockCommand,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, ReadError> {
    let settings = LockSettings::resolve(cmd, global, cwd)?;
    let transport = Transport::system()?;
    run_with(&transport, &settings, &mut anstream::stdout().lock()).await
}

/// [`run`] with the transport and output given, for tests.
pub async fn run_with(
    transport: &Transport,
    s: &LockSettings,
    out: &mut impl Write,
) -> Result<ExitCode, ReadError> {
    let method = if s.release {
        Method::DELETE
    } else {
        Method::GET
    };
    let path = format!("{API_PREFIX}/lock");
    let (hosts, timeout) = (&s.read.targets.hosts, s.read.timeout);
    let answers = Answer::<LockStatus>::from_all(transport, hosts, method, &path, timeout).await;
    let released = s.release;
    output::answers(out, s.read.json, &answers, |out, a| {
        render::lock(out, a, released)
    })
    .map_err(ReadError::Output)?;
    Ok(Answer::exit_code(&answers))
}
