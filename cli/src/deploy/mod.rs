//! `hostctl deploy SERVICE` and `hostctl rollback [VERSION]` across an
//! environment: build and pack once, then host by host (in batches of
//! `--batch-size`), upload what the host lacks and let hostd switch,
//! restart through the health gate and roll back on its own. The first
//! host that does not end on the new release stops the rollout; the rest
//! stay on the old one. `releases` and `lock` read the hosts.

pub mod args;
pub mod artifact;
pub mod host;
pub mod inspect;
mod render;
pub mod version;

use std::process::ExitCode;
use std::time::Duration;

use hostd_api::{DeployHooks, DeployRequest, HealthGate, RollbackRequest, TaskSpec};
use hyper::body::Bytes;

use crate::EXIT_USAGE;
use crate::config::{Config, ConfigError, DeployService, HostTarget};
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};

pub use host::{HostOutcome, HostResult};
pub use version::{VersionError, resolve};

#[cfg(test)]
mod tests;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{} configures several services ({}); pick one with --service", path.display(), known.join(", "))]
    WhichService {
        path: std::path::PathBuf,
        known: Vec<String>,
    },
    #[error("the build of {service} failed ({status}); nothing was deployed")]
    Build { service: String, status: String },
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

impl DeployError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) | Self::Target(_) | Self::Version(_) | Self::WhichService { .. } => {
                ExitCode::from(EXIT_USAGE)
            }
            Self::Artifact(_)
            | Self::Transport(_)
            | Self::Build { .. }
            | Self::BuildSpawn { .. }
            | Self::Worker
            | Self::Request(_)
            | Self::Output(_) => ExitCode::FAILURE,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Transport(e) => e.hint(),
            Self::Artifact(_) => {
                Some("check `artifact` and `build` of the service in hostctl.toml".into())
            }
            _ => None,
        }
    }
}

/// What every deploy-family command needs from hostctl.toml and the flags.
pub struct Scope {
    pub config: Config,
    pub targets: Targets,
}

impl Scope {
    pub fn resolve(
        global: &crate::flags::GlobalArgs,
        host: Option<&str>,
        cwd: &std::path::Path,
    ) -> Result<Self, DeployError> {
        let (config, targets) = Targets::resolve_with_config(global, host, cwd)?;
        Ok(Self { config, targets })
    }

    /// `--service`, else the only configured one.
    pub fn service(&self, name: Option<&str>) -> Result<&DeployService, DeployError> {
        match name {
            Some(n) => Ok(self.config.service(n)?),
            None if self.config.services.len() == 1 => {
                let only = self
                    .config
                    .services
                    .keys()
                    .next()
                    .map(String::as_str)
                    .unwrap_or_default();
                Ok(self.config.service(only)?)
            }
            None => Err(DeployError::WhichService {
                path: self.config.path.clone(),
                known: self.config.services.keys().cloned().collect(),
            }),
        }
    }
}

/// How the rollout goes, from `FleetArgs`.
pub struct Fleet {
    pub batch_size: usize,
    pub lock_wait_seconds: u64,
    pub timeout: Duration,
    pub json: bool,
    /// Progress on stderr: a person at a terminal, and no --json.
    pub progress: bool,
}

impl From<&args::FleetArgs> for Fleet {
    fn from(a: &args::FleetArgs) -> Self {
        use std::io::IsTerminal;
        Self {
            batch_size: a.batch_size.max(1) as usize,
            lock_wait_seconds: crate::parse::seconds_rounded_up(a.lock_wait),
            timeout: a.timeout,
            json: a.json,
            progress: !a.json && std::io::stderr().is_terminal(),
        }
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
async fn build(svc: &DeployService) -> Result<(), DeployError> {
    let Some(command) = &svc.build else {
        return Ok(());
    };
    tracing::info!(service = svc.name, command, "building");
    eprintln!("build {}: {command}", svc.name);
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
            status: status.to_string(),
        })
    }
}

pub async fn deploy(scope: Scope, a: &args::DeployArgs) -> Result<ExitCode, DeployError> {
    let svc = scope.config.service(&a.service)?.clone();
    let fleet = Fleet::from(&a.fleet);
    if !a.no_build {
        build(&svc).await?;
    }
    let base_version = version::resolve(a.version.as_deref(), &svc.dir)?;
    let artifact = svc.artifact.clone();
    let packed = tokio::task::spawn_blocking(move || artifact::pack(&artifact))
        .await
        .map_err(|_| DeployError::Worker)??;
    // Two dirty builds of one commit differ: the digest tells them apart.
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
    let request = DeployRequest {
        unit: svc.unit.clone(),
        version: version.clone(),
        artifact: packed.digest.clone(),
        health: gate(&svc),
        hooks: DeployHooks {
            pre_switch: svc.hooks.pre_switch.clone(),
            post_deploy: svc.hooks.post_deploy.clone(),
        },
        hook_timeout_seconds: svc.hook_timeout.as_secs().max(1),
        pre_switch_tasks: pre_switch_tasks(&svc),
        keep: svc.keep,
        requested_by: crate::operator::requested_by(),
        lock_wait_seconds: fleet.lock_wait_seconds,
    };
    let change = host::Change {
        path: "deploy",
        body: Bytes::from(serde_json::to_vec(&request).map_err(DeployError::Request)?),
        version: &version,
        upload: Some(host::Upload {
            digest: &packed.digest,
            file: packed.file.path(),
            bytes: packed.compressed_bytes,
        }),
        timeout: fleet.timeout,
        progress: fleet.progress,
    };
    rollout(&scope.targets.hosts, &change, &fleet).await
}

pub async fn rollback(scope: Scope, a: &args::RollbackArgs) -> Result<ExitCode, DeployError> {
    let (service, version) = a.split(|w| scope.config.services.contains_key(w));
    let svc = scope.service(service.as_deref())?.clone();
    if let Some(v) = &version {
        version::check(v)?;
    }
    let fleet = Fleet::from(&a.fleet);
    let request = RollbackRequest {
        unit: svc.unit.clone(),
        version: version.clone(),
        health: gate(&svc),
        requested_by: crate::operator::requested_by(),
        lock_wait_seconds: fleet.lock_wait_seconds,
    };
    let shown = version.unwrap_or_else(|| "previous".into());
    let change = host::Change {
        path: "rollback",
        body: Bytes::from(serde_json::to_vec(&request).map_err(DeployError::Request)?),
        version: &shown,
        upload: None,
        timeout: fleet.timeout,
        progress: fleet.progress,
    };
    rollout(&scope.targets.hosts, &change, &fleet).await
}

/// Batch by batch; after a batch with a host not on the new release, the
/// remaining hosts are skipped. Exit 0 only when every host is ok.
async fn rollout(
    hosts: &[HostTarget],
    change: &host::Change<'_>,
    fleet: &Fleet,
) -> Result<ExitCode, DeployError> {
    let transport = Transport::system()?;
    let mut results = Vec::new();
    let mut stopped = false;
    for batch in hosts.chunks(fleet.batch_size) {
        if stopped {
            results.extend(
                batch
                    .iter()
                    .map(|t| HostResult::skipped(&t.name, change.version)),
            );
            continue;
        }
        let runs = batch.iter().map(|t| {
            let quiet = fleet.json;
            let mut steps = render::Steps::new(&t.name, anstream::stderr());
            host::run(&transport, t, change, move |e| {
                if !quiet {
                    // A closed stderr must not stop the rollout.
                    let _ = steps.event(e);
                }
            })
        });
        let done = futures_util::future::join_all(runs).await;
        stopped = done.iter().any(|r| r.outcome != HostOutcome::Ok);
        results.extend(done);
    }
    let mut out = anstream::stdout().lock();
    if fleet.json {
        render::json(&mut out, &results)
    } else {
        render::summary(&mut out, &results)
    }
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
