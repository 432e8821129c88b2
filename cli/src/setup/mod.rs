//! `hostctl setup [HOST]`: a plain instance (a stock Debian 12 or Amazon
//! Linux 2023 image, reachable by SSH with sudo) brought to the state of an
//! instance from our AMI, then to the configuration the repository
//! declares. Per host, one at a time: the staging directory Packer uploads
//! (embedded in hostctl at build time) with the hostd build goes up over
//! SSH, provision.sh runs as root exactly as in the image build, what a
//! boot starts is started, hostd answers on the uploaded build, and then
//! the host's `hostd_config` is applied as `hostctl apply --yes` would.
//! provision.sh is idempotent and an apply of what runs changes nothing,
//! so running setup again changes nothing.

pub mod args;
mod bundle;
mod remote;
mod render;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::exit::{CommandError, Failure};
use crate::flags::GlobalArgs;
use crate::host_config::{self, ApplySettings, HostConfigError};
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};
use args::SetupArgs;
pub use remote::Provisioned;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot read the hostd build {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no hostd build given and none beside hostctl ({}): pass --binary", .0.display())]
    NoBinary(PathBuf),
    #[error("`{0}` is not a package name (a-z, 0-9, then also . + -)")]
    Package(String),
    #[error("cannot pack the staging directory")]
    Pack(#[source] std::io::Error),
    #[error("{host}: {step} failed: {detail}")]
    Step {
        host: String,
        step: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Apply(#[from] HostConfigError),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for SetupError {
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_) | Self::NoBinary(_) | Self::Package(_) => Failure::Usage,
            Self::Read { .. } | Self::Pack(_) | Self::Step { .. } => Failure::Failed,
            Self::Transport(e) => Failure::Transport(e),
            Self::Apply(e) => e.failure(),
            Self::Output(e) => Failure::Output(e),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Step { .. } => Some(
                "fix what the step says and run setup again: every step is safe to repeat".into(),
            ),
            Self::Apply(e) => e.hint(),
            _ => self.failure().hint(),
        }
    }
}

/// Validated settings for one `setup`.
#[derive(Debug, Clone)]
pub struct SetupSettings {
    pub targets: Targets,
    pub binary: PathBuf,
    pub packages: Vec<String>,
    pub timeout: Duration,
    /// The apply that follows provisioning, for the same hosts.
    pub apply: ApplySettings,
    pub json: bool,
}

impl SetupSettings {
    pub fn resolve(a: &SetupArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, SetupError> {
        if let Some(bad) = a.packages.iter().find(|p| !bundle::is_package_name(p)) {
            return Err(SetupError::Package(bad.clone()));
        }
        let binary = match &a.binary {
            Some(b) => b.clone(),
            None => beside_hostctl()?,
        };
        let apply_args = host_config::args::ApplyArgs {
            host: a.host.clone(),
            batch_size: 1,
            yes: true,
            dry_run: false,
            lock_wait: Duration::ZERO,
            health_timeout: None,
            timeout: a.timeout,
            json: a.json,
        };
        // Resolved first: a host without `hostd_config` is refused before
        // anything is uploaded.
        let apply = ApplySettings::resolve(&apply_args, global, cwd)?;
        Ok(Self {
            targets: Targets::resolve(global, a.host.as_deref(), cwd)?,
            binary,
            packages: a.packages.clone(),
            timeout: a.timeout,
            apply,
            json: a.json,
        })
    }
}

fn beside_hostctl() -> Result<PathBuf, SetupError> {
    let exe = std::env::current_exe().map_err(|source| SetupError::Read {
        path: PathBuf::from("hostctl"),
        source,
    })?;
    let hostd = exe.with_file_name("hostd");
    if hostd.is_file() {
        Ok(hostd)
    } else {
        Err(SetupError::NoBinary(hostd))
    }
}

pub async fn run(a: &SetupArgs, global: &GlobalArgs, cwd: &Path) -> Result<ExitCode, SetupError> {
    let s = SetupSettings::resolve(a, global, cwd)?;
    let transport = Transport::system()?;
    let out = &mut anstream::stdout().lock();
    run_with(&transport, &s, out, &mut anstream::stderr()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Provisions host after host (the first failure stops the rest), then
/// applies the repository's configuration to them.
pub async fn run_with(
    transport: &Transport,
    s: &SetupSettings,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> Result<(), SetupError> {
    let read = |path: &Path| {
        let path = path.to_owned();
        move |source| SetupError::Read { path, source }
    };
    let hostd = std::fs::read(&s.binary).map_err(read(&s.binary))?;
    let front_path = s.binary.with_file_name(hostd_api::FRONT_BINARY);
    let front = std::fs::read(&front_path).map_err(read(&front_path))?;
    let build = crate::artifact::sha256_hex(&hostd);
    let staging = bundle::staging(&hostd, &front).map_err(SetupError::Pack)?;
    let mut done = Vec::new();
    for host in &s.targets.hosts {
        let began = Instant::now();
        let step = remote::Step {
            transport,
            host,
            timeout: s.timeout,
        };
        let _ = writeln!(
            err,
            "{}: uploading the staging directory and hostd",
            host.name
        );
        let (dir, operator) = step.upload(&staging).await?;
        step.provision(&dir, &operator, &s.packages, err).await?;
        step.start().await?;
        let mut status = step.serving().await?;
        let restarted_hostd = status.hostd_build.as_deref().is_some_and(|b| b != build);
        if restarted_hostd {
            let _ = writeln!(
                err,
                "{}: hostd runs another build; restarting it",
                host.name
            );
            step.restart_hostd().await?;
            status = step.serving().await?;
        }
        done.push(Provisioned {
            host: host.name.clone(),
            operator,
            hostd_build: status.hostd_build,
            restarted_hostd,
            seconds: began.elapsed().as_secs_f64(),
        });
    }
    if !s.json {
        render::provisioned(out, &done).map_err(SetupError::Output)?;
    }
    let applied =
        host_config::apply_with(transport, &s.apply, out, err, |_| Ok("yes".to_owned())).await;
    applied.map_err(SetupError::from)
}
