//! `hostctl deploy SERVICE` and `hostctl rollback [VERSION]` across an
//! environment: build and pack once, then host by host (in batches of
//! `--batch-size`), upload what the host lacks and let hostd switch,
//! restart through the health gate and roll back on its own. The first
//! host that does not end on the new release stops the rollout; the rest
//! stay on the old one.

pub mod args;
mod host;
mod render;
#[cfg(test)]
mod tests;
pub mod version;

use std::io::IsTerminal;
use std::path::Path;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use hostd_api::{DeployHooks, DeployRequest, HealthGate, RollbackRequest, TaskSpec};
use hyper::body::Bytes;

use crate::artifact::{self, ArtifactError, Packed, Upload};
use crate::config::{Config, DeployService};
use crate::exit::{CommandError, Failure};
use crate::flags::GlobalArgs;
use crate::fleet;
use crate::output;
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};
use args::{DeployArgs, FleetArgs, RollbackArgs};
use host::{HostOutcome, HostResult};
use version::VersionError;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the build of {service} failed ({status}); nothing was deployed")]
    Build { service: String, status: ExitStatus },
    #[error("cannot run the build of {service}")]
    BuildSpawn {
        service: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the packing thread failed")]
    Worker,
    #[error("cannot encode the request")]
    Request(#[source] serde_json::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for DeployError {
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_) | Self::Version(_) => Failure::Usage,
            Self::Artifact(_)
            | Self::Build { .. }
            | Self::BuildSpawn { .. }
            | Self::Worker
            | Self::Request(_) => Failure::Failed,
            Self::Transport(e) => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Artifact(_) => {
                Some("check `artifact` and `build` of the service in hostctl.toml".into())
            }
            _ => self.failure().hint(),
        }
    }
}

/// How a change goes across the hosts of an environment, from the flags.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub targets: Targets,
    pub batch_size: usize,
    pub lock_wait_seconds: u64,
    pub timeout: Duration,
    pub json: bool,
    /// Progress on stderr: a person at a terminal, and no --json.
    pub progress: bool,
}

impl Rollout {
    fn resolve(
        a: &FleetArgs,
        global: &GlobalArgs,
        cwd: &Path,
    ) -> Result<(Config, Self), DeployError> {
        let (config, targets) = Targets::resolve_with_config(global, a.host.as_deref(), cwd)?;
        let rollout = Self {
            targets,
            batch_size: a.batch_size.max(1) as usize,
            lock_wait_seconds: crate::parse::seconds_rounded_up(a.lock_wait),
            timeout: a.timeout,
            json: a.json,
            progress: !a.json && std::io::stderr().is_terminal(),
        };
        Ok((config, rollout))
    }
}

/// Validated settings for one `deploy`.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    pub rollout: Rollout,
    pub service: DeployService,
    /// `--version`; else the git commit, known once built.
    pub version: Option<String>,
    pub build: bool,
}

impl DeploySettings {
    pub fn resolve(a: &DeployArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, DeployError> {
        let (config, rollout) = Rollout::resolve(&a.fleet, global, cwd)?;
        Ok(Self {
            service: config
                .service(&a.service)
                .map_err(TargetError::from)?
                .clone(),
            rollout,
            version: a.version.clone(),
            build: !a.no_build,
        })
    }
}

/// Validated settings for one `rollback`.
#[derive(Debug, Clone)]
pub struct RollbackSettings {
    pub rollout: Rollout,
    pub service: DeployService,
    /// The release to return to; hostd's previous one when `None`.
    pub version: Option<String>,
}

impl RollbackSettings {
    pub fn resolve(a: &RollbackArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, DeployError> {
        let (config, rollout) = Rollout::resolve(&a.fleet, global, cwd)?;
        let (service, version) = a.split(|w| config.services.contains_key(w));
        let service = config.pick_service(service.as_deref());
        let service = service.map_err(TargetError::from)?.clone();
        if let Some(v) = &version {
            version::check(v)?;
        }
        Ok(Self {
            rollout,
            service,
            version,
        })
    }
}

fn gate(svc: &DeployService) -> HealthGate {
    HealthGate {
        path: svc.health_path.clone(),
        timeout_seconds: svc.health_timeout.as_secs().max(1),
    }
}

/// The service's `pre_switch` tasks, by name: the order hostd runs them in.
fn pre_switch_tasks(svc: &DeployService) -> Vec<TaskSpec> {
    svc.tasks
        .values()
        .filter(|t| t.pre_switch)
        .map(|t| TaskSpec {
            name: t.name.clone(),
            command: t.command.clone(),
            timeout_seconds: t.timeout_seconds(),
        })
        .collect()
}

/// Runs the service's build command; its output goes to stderr, so
/// stdout keeps only the summary.
async fn build(svc: &DeployService, command: &str) -> Result<(), DeployError> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(&svc.dir)
        .stdout(std::io::stderr())
        .status()
        .await
        .map_err(|source| DeployError::BuildSpawn {
            service: svc.name.clone(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(DeployError::Build {
            service: svc.name.clone(),
            status,
        })
    }
}

/// The artifact packed, and the version it is deployed as: two dirty
/// builds of one commit differ, and the digest tells them apart.
async fn pack(s: &DeploySettings) -> Result<(Packed, String), DeployError> {
    let base_version = version::resolve(s.version.as_deref(), &s.service.dir)?;
    let artifact = s.service.artifact.clone();
    let packed = tokio::task::spawn_blocking(move || artifact::pack(&artifact))
        .await
        .map_err(|_| DeployError::Worker)??;
    let version = if base_version.ends_with("+dirty") {
        format!("{base_version}.{}", &packed.digest[..8])
    } else {
        base_version
    };
    version::check(&version)?;
    tracing::info!(
        version,
        digest = packed.digest,
        bytes = packed.compressed_bytes,
        "packed"
    );
    Ok((packed, version))
}

/// `hostctl deploy SERVICE`.
pub async fn deploy(
    a: &DeployArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, DeployError> {
    let s = DeploySettings::resolve(a, global, cwd)?;
    let svc = &s.service;
    if let Some(command) = svc.build.as_deref().filter(|_| s.build) {
        tracing::info!(service = svc.name, command, "building");
        render::building(svc, command);
        build(svc, command).await?;
    }
    let (packed, version) = pack(&s).await?;
    let request = DeployRequest {
        unit: svc.unit.clone(),
        version: version.clone(),
        artifact: packed.digest.clone(),
        health: gate(svc),
        hooks: DeployHooks {
            pre_switch: svc.hooks.pre_switch.clone(),
            post_deploy: svc.hooks.post_deploy.clone(),
        },
        hook_timeout_seconds: svc.hook_timeout.as_secs().max(1),
        pre_switch_tasks: pre_switch_tasks(svc),
        keep: svc.keep,
        requested_by: crate::operator::requested_by(),
        lock_wait_seconds: s.rollout.lock_wait_seconds,
    };
    let change = host::Change {
        path: "deploy",
        body: Bytes::from(serde_json::to_vec(&request).map_err(DeployError::Request)?),
        version: &version,
        upload: Some(Upload::new(
            &packed.digest,
            packed.file.path(),
            packed.compressed_bytes,
        )),
        timeout: s.rollout.timeout,
    };
    roll_out(&s.rollout, &change).await
}

/// `hostctl rollback [SERVICE] [VERSION]`.
pub async fn rollback(
    a: &RollbackArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, DeployError> {
    let s = RollbackSettings::resolve(a, global, cwd)?;
    let request = RollbackRequest {
        unit: s.service.unit.clone(),
        version: s.version.clone(),
        health: gate(&s.service),
        requested_by: crate::operator::requested_by(),
        lock_wait_seconds: s.rollout.lock_wait_seconds,
    };
    let shown = s.version.clone().unwrap_or_else(|| "previous".into());
    let change = host::Change {
        path: "rollback",
        body: Bytes::from(serde_json::to_vec(&request).map_err(DeployError::Request)?),
        version: &shown,
        upload: None,
        timeout: s.rollout.timeout,
    };
    roll_out(&s.rollout, &change).await
}

/// The change batch by batch, then the summary. Exit 0 only when every
/// host is ok.
async fn roll_out(r: &Rollout, change: &host::Change<'_>) -> Result<ExitCode, DeployError> {
    let transport = Transport::system()?;
    let results = change_hosts(&transport, r, change).await;
    render::results(&mut anstream::stdout().lock(), r.json, &results)
        .map_err(DeployError::Output)?;
    let all_ok = results
        .iter()
        .all(|r| r.outcome == HostOutcome::Ok && r.error.is_none());
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The action: after a batch with a host not on the new release, the
/// remaining hosts are skipped. hostd's steps go to stderr as they come.
async fn change_hosts(
    transport: &Transport,
    r: &Rollout,
    change: &host::Change<'_>,
) -> Vec<HostResult> {
    let hosts = &r.targets.hosts;
    let parts = fleet::in_batches(
        hosts,
        r.batch_size,
        |t| {
            let mut steps = render::Steps::new(&t.name, anstream::stderr());
            let (json, progress) = (r.json, r.progress);
            let new_bar = move |bytes| output::upload_bar(&t.name, bytes, progress);
            host::run(transport, t, change, new_bar, move |e| {
                if !json {
                    // A closed stderr must not stop the rollout.
                    let _ = steps.event(e);
                }
            })
        },
        |result: &HostResult| result.outcome != HostOutcome::Ok,
    )
    .await;
    hosts
        .iter()
        .zip(parts)
        .map(|(t, part)| part.or_skipped(|| HostResult::skipped(&t.name, change.version)))
        .collect()
}
