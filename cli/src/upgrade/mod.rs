//! `hostctl upgrade-hostd --binary PATH`: push a new hostd build to every
//! host of the environment, one host at a time. The binary travels as an
//! artifact (content-addressed, compressed, skipped when the host has it);
//! hostd checks that it runs there, renames it over itself and has systemd
//! restart hostd.service, which stops none of the services it manages.
//! hostctl then waits until the host's status reports the new build. The
//! first host that fails stops the rest.

pub mod args;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hostd_api::{API_PREFIX, HostStatus, UpgradeAnswer, UpgradeRequest};
use hyper::Method;
use hyper::body::Bytes;
use serde::Serialize;

use crate::artifact::{self, ArtifactError, Upload, ensure_artifact};
use crate::config::HostTarget;
use crate::exit::{CommandError, Failure};
use crate::flags::GlobalArgs;
use crate::fleet;
use crate::output;
use crate::targets::{TargetError, Targets};
use crate::transport::{Transport, TransportError};
use args::UpgradeArgs;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot read the hostd build {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the packing thread failed")]
    Worker,
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for UpgradeError {
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_) => Failure::Usage,
            Self::Read { .. } | Self::Artifact(_) | Self::Worker => Failure::Failed,
            Self::Transport(e) => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }
}

/// Validated settings for one `upgrade-hostd`.
#[derive(Debug, Clone)]
pub struct UpgradeSettings {
    pub targets: Targets,
    pub binary: PathBuf,
    /// Per host, from ssh connect to the new build answering.
    pub timeout: Duration,
    pub json: bool,
}

impl UpgradeSettings {
    pub fn resolve(a: &UpgradeArgs, global: &GlobalArgs, cwd: &Path) -> Result<Self, TargetError> {
        Ok(Self {
            targets: Targets::resolve(global, a.host.as_deref(), cwd)?,
            binary: a.binary.clone(),
            timeout: a.timeout,
            json: a.json,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Restarted on the new build.
    Upgraded,
    /// Already ran it.
    Unchanged,
    Failed,
    /// Not tried: an earlier host failed.
    Skipped,
}

#[derive(Debug, Serialize)]
pub struct HostUpgrade {
    pub host: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_build: Option<String>,
    pub build: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The binary packed as an artifact holding the file `hostd` and, when
/// the build has one beside it, the front's `hostd-front`.
struct Package {
    packed: artifact::Packed,
    build: String,
}

fn package(binary: &Path) -> Result<Package, UpgradeError> {
    let read = |path: &Path| {
        let path = path.to_owned();
        move |source| UpgradeError::Read { path, source }
    };
    let bytes = std::fs::read(binary).map_err(read(binary))?;
    let build = artifact::sha256_hex(&bytes);
    let dir = tempfile::tempdir().map_err(read(binary))?;
    let mode = || std::os::unix::fs::PermissionsExt::from_mode(0o755);
    let copy = dir.path().join("hostd");
    std::fs::write(&copy, &bytes).map_err(read(binary))?;
    std::fs::set_permissions(&copy, mode()).map_err(read(binary))?;
    let front = binary.with_file_name(hostd_api::FRONT_BINARY);
    if front.is_file() {
        let copy = dir.path().join(hostd_api::FRONT_BINARY);
        std::fs::copy(&front, &copy).map_err(read(&front))?;
        std::fs::set_permissions(&copy, mode()).map_err(read(&front))?;
    } else {
        tracing::warn!(
            "no {} beside the binary: the hosts keep the front they run",
            front.display()
        );
    }
    let packed = artifact::pack(dir.path())?;
    Ok(Package { packed, build })
}

/// `hostctl upgrade-hostd`: exit 0 only when every host runs the build.
pub async fn run(
    a: &UpgradeArgs,
    global: &GlobalArgs,
    cwd: &Path,
) -> Result<ExitCode, UpgradeError> {
    let s = UpgradeSettings::resolve(a, global, cwd)?;
    let binary = s.binary.clone();
    let pkg = tokio::task::spawn_blocking(move || package(&binary))
        .await
        .map_err(|_| UpgradeError::Worker)??;
    let transport = Transport::system()?;
    let results = upgrade(&transport, &s, &pkg).await;
    render::results(&mut anstream::stdout().lock(), s.json, &results)
        .map_err(UpgradeError::Output)?;
    let ok = results
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Upgraded | Outcome::Unchanged));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The action: host by host, up to the first that failed.
async fn upgrade(transport: &Transport, s: &UpgradeSettings, pkg: &Package) -> Vec<HostUpgrade> {
    let hosts = &s.targets.hosts;
    let parts = fleet::in_batches(
        hosts,
        1,
        |target| async move {
            let started = Instant::now();
            let mut r = HostUpgrade::skipped(target, &pkg.build);
            match tokio::time::timeout(s.timeout, one(transport, target, pkg, s, &mut r)).await {
                Ok(Ok(outcome)) => r.outcome = outcome,
                Ok(Err(e)) => {
                    r.outcome = Outcome::Failed;
                    r.error = Some(hostd_api::error_chain(&e));
                }
                Err(_) => {
                    r.outcome = Outcome::Failed;
                    r.error = Some(format!(
                        "no answer with the new build within {} (--timeout); see `hostctl status` and `journalctl -u hostd` on the host",
                        humantime::format_duration(s.timeout)
                    ));
                }
            }
            r.seconds = started.elapsed().as_secs_f64();
            r
        },
        |r: &HostUpgrade| r.outcome == Outcome::Failed,
    )
    .await;
    hosts
        .iter()
        .zip(parts)
        .map(|(target, part)| part.or_skipped(|| HostUpgrade::skipped(target, &pkg.build)))
        .collect()
}

impl HostUpgrade {
    fn skipped(target: &HostTarget, build: &str) -> Self {
        Self {
            host: target.name.clone(),
            outcome: Outcome::Skipped,
            previous_build: None,
            build: build.to_owned(),
            version: None,
            seconds: 0.0,
            error: None,
        }
    }
}

async fn one(
    transport: &Transport,
    target: &HostTarget,
    pkg: &Package,
    s: &UpgradeSettings,
    r: &mut HostUpgrade,
) -> Result<Outcome, TransportError> {
    let status_path = format!("{API_PREFIX}/status");
    // Root on the host: hostd refuses a new build from anyone else.
    let mut client = transport.connect(&target.as_root()).await?;
    let before: HostStatus = client.get_json(&status_path).await?;
    r.previous_build = before.hostd_build.clone();
    if before.hostd_build.as_deref() == Some(pkg.build.as_str()) {
        r.version = Some(format!("hostd {}", before.hostd_version));
        client.close().await;
        return Ok(Outcome::Unchanged);
    }
    let upload = Upload::new(
        &pkg.packed.digest,
        pkg.packed.file.path(),
        pkg.packed.compressed_bytes,
    );
    let new_bar = |bytes| output::upload_bar(&target.name, bytes, !s.json);
    ensure_artifact(&mut client, &upload, new_bar).await?;
    let request = UpgradeRequest {
        artifact: pkg.packed.digest.clone(),
        build: pkg.build.clone(),
        requested_by: crate::operator::requested_by(),
    };
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let path = format!("{API_PREFIX}/hostd/upgrade");
    let answer = client
        .request(Method::POST, &path, Some(Bytes::from(body)))
        .await;
    client.close().await;
    let answer: UpgradeAnswer =
        serde_json::from_slice(&answer?).map_err(|source| TransportError::Decode {
            host: target.name.clone(),
            path,
            source,
        })?;
    r.version = Some(answer.version);
    // The old hostd goes away; the new one answers once systemd started it.
    loop {
        let now: Result<HostStatus, _> = transport
            .call(
                target,
                Method::GET,
                &status_path,
                None,
                Duration::from_secs(10),
            )
            .await;
        if let Ok(s) = now
            && s.hostd_build.as_deref() == Some(pkg.build.as_str())
        {
            return Ok(Outcome::Upgraded);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
