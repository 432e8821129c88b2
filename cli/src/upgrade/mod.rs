//! `hostctl upgrade-hostd --binary PATH`: push a new hostd build to every
//! host of the environment, one host at a time. The binary travels as an
//! artifact (content-addressed, compressed, skipped when the host has it);
//! hostd checks that it runs there, renames it over itself and has systemd
//! restart hostd.service, which stops none of the services it manages.
//! hostctl then waits until the host's status reports the new build. The
//! first host that fails stops the rest.

pub mod args;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hostd_api::{API_PREFIX, HostStatus, UpgradeAnswer, UpgradeRequest};
use hyper::Method;
use hyper::body::Bytes;
use serde::Serialize;

use crate::config::HostTarget;
use crate::deploy::artifact::{self, ArtifactError};
use crate::deploy::host::{Upload, ensure_artifact};
use crate::transport::{Transport, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
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

/// The binary packed as an artifact holding the one file `hostd`.
struct Package {
    packed: artifact::Packed,
    build: String,
}

fn package(binary: &Path) -> Result<Package, UpgradeError> {
    let read = |source| UpgradeError::Read {
        path: binary.to_owned(),
        source,
    };
    let bytes = std::fs::read(binary).map_err(read)?;
    let build = artifact::sha256_hex(&bytes);
    let dir = tempfile::tempdir().map_err(read)?;
    let copy = dir.path().join("hostd");
    std::fs::write(&copy, &bytes).map_err(read)?;
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&copy, mode).map_err(read)?;
    let packed = artifact::pack(dir.path())?;
    Ok(Package { packed, build })
}

pub async fn run(hosts: &[HostTarget], args: &args::UpgradeArgs) -> Result<ExitCode, UpgradeError> {
    let binary = args.binary.clone();
    let pkg = tokio::task::spawn_blocking(move || package(&binary))
        .await
        .map_err(|_| UpgradeError::Worker)??;
    let transport = Transport::system()?;
    let mut results: Vec<HostUpgrade> = Vec::new();
    for target in hosts {
        let failed = results.iter().any(|r| r.outcome == Outcome::Failed);
        let started = Instant::now();
        let mut r = HostUpgrade {
            host: target.name.clone(),
            outcome: Outcome::Skipped,
            previous_build: None,
            build: pkg.build.clone(),
            version: None,
            seconds: 0.0,
            error: None,
        };
        if !failed {
            let done =
                tokio::time::timeout(args.timeout, one(&transport, target, &pkg, args, &mut r))
                    .await;
            match done {
                Ok(Ok(outcome)) => r.outcome = outcome,
                Ok(Err(e)) => {
                    r.outcome = Outcome::Failed;
                    r.error = Some(hostd_api::error_chain(&e));
                }
                Err(_) => {
                    r.outcome = Outcome::Failed;
                    r.error = Some(format!(
                        "no answer with the new build within {} (--timeout); see `hostctl status` and `journalctl -u hostd` on the host",
                        humantime::format_duration(args.timeout)
                    ));
                }
            }
            r.seconds = started.elapsed().as_secs_f64();
        }
        results.push(r);
    }
    render(&results, args.json)?;
    let ok = results
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Upgraded | Outcome::Unchanged));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn one(
    transport: &Transport,
    target: &HostTarget,
    pkg: &Package,
    args: &args::UpgradeArgs,
    r: &mut HostUpgrade,
) -> Result<Outcome, TransportError> {
    let status_path = format!("{API_PREFIX}/status");
    let mut client = transport.connect(target).await?;
    let before: HostStatus = client.get_json(&status_path).await?;
    r.previous_build = before.hostd_build.clone();
    if before.hostd_build.as_deref() == Some(pkg.build.as_str()) {
        r.version = Some(format!("hostd {}", before.hostd_version));
        client.close().await;
        return Ok(Outcome::Unchanged);
    }
    let upload = Upload {
        digest: &pkg.packed.digest,
        file: pkg.packed.file.path(),
        bytes: pkg.packed.compressed_bytes,
    };
    ensure_artifact(&mut client, &upload, !args.json).await?;
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

fn render(results: &[HostUpgrade], json: bool) -> Result<(), UpgradeError> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, results)
            .map_err(|e| UpgradeError::Output(e.into()))?;
        writeln!(out).map_err(UpgradeError::Output)?;
        return Ok(());
    }
    for r in results {
        let outcome = match r.outcome {
            Outcome::Upgraded => "upgraded",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        };
        let short = |b: &str| b.chars().take(12).collect::<String>();
        let from = r
            .previous_build
            .as_deref()
            .map(short)
            .unwrap_or_else(|| "?".into());
        writeln!(
            out,
            "{}  {outcome}  {} -> {}  {}  {:.1}s",
            r.host,
            from,
            short(&r.build),
            r.version.as_deref().unwrap_or(""),
            r.seconds
        )
        .map_err(UpgradeError::Output)?;
        if let Some(e) = &r.error {
            writeln!(out, "    {e}").map_err(UpgradeError::Output)?;
        }
    }
    Ok(())
}
