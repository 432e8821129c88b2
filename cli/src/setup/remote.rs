//! The steps on one host, over the operator's SSH: upload the staging
//! directory, run provision.sh as root (the same script Packer runs),
//! start what a boot of the image starts, and wait for hostd to serve on
//! the build uploaded.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hostd_api::{API_PREFIX, HostStatus};
use hyper::Method;
use tokio::io::AsyncWriteExt;

use super::SetupError;
use crate::config::HostTarget;
use crate::transport::{Transport, shell_quote};

/// How long hostd may take to answer after its start.
const SERVE_TIMEOUT: Duration = Duration::from_secs(120);

/// What provisioning did to one host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provisioned {
    pub host: String,
    /// The account provision.sh made the operator (`hostd` group, journal).
    pub operator: String,
    /// sha256 of the hostd build running at the end.
    pub hostd_build: Option<String>,
    /// hostd ran another build and was restarted on this one (the services
    /// it manages keep running).
    pub restarted_hostd: bool,
    pub seconds: f64,
}

pub struct Step<'a> {
    pub transport: &'a Transport,
    pub host: &'a HostTarget,
    pub timeout: Duration,
}

impl Step<'_> {
    fn failed(&self, step: &'static str, detail: impl Into<String>) -> SetupError {
        SetupError::Step {
            host: self.host.name.clone(),
            step,
            detail: detail.into(),
        }
    }

    /// Runs `script` with `sh -c` on the host, `stdin` fed to it; its
    /// stdout, or the step's failure with what it said.
    async fn sh(
        &self,
        step: &'static str,
        script: &str,
        stdin: &[u8],
    ) -> Result<String, SetupError> {
        let mut cmd = self
            .transport
            .remote_command(self.host, &["sh", "-c", script]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| self.failed(step, e.to_string()))?;
        let input = child.stdin.take();
        let feed = async {
            if let Some(mut input) = input {
                input.write_all(stdin).await?;
                input.shutdown().await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let run = async {
            feed.await
                .map_err(|e| self.failed(step, format!("sending: {e}")))?;
            child
                .wait_with_output()
                .await
                .map_err(|e| self.failed(step, e.to_string()))
        };
        let out = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| {
                self.failed(step, format!("no end after {}s", self.timeout.as_secs()))
            })??;
        if !out.status.success() {
            let said = crate::transport::summarize_stderr(&[out.stdout, out.stderr].concat());
            return Err(self.failed(step, format!("{} ({said})", out.status)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Unpacks the staging directory into a fresh directory of the
    /// operator's; answers it and the operator's account name.
    pub async fn upload(&self, bundle: &[u8]) -> Result<(String, String), SetupError> {
        let script = "set -e; d=$(mktemp -d /tmp/hostd-setup.XXXXXX); tar -xzf - -C \"$d\"; echo \"$d\"; id -un";
        let said = self.sh("upload", script, bundle).await?;
        let mut lines = said.lines().map(str::trim);
        match (lines.next(), lines.next()) {
            (Some(dir), Some(user)) if dir.starts_with("/tmp/hostd-setup.") && !user.is_empty() => {
                Ok((dir.to_owned(), user.to_owned()))
            }
            _ => Err(self.failed("upload", format!("unexpected answer: {said}"))),
        }
    }

    /// provision.sh as root through sudo, its log lines to `progress`; the
    /// staging directory removed whatever happened.
    pub async fn provision(
        &self,
        dir: &str,
        operator: &str,
        packages: &[String],
        progress: &mut impl Write,
    ) -> Result<(), SetupError> {
        let script = format!(
            "sudo -n env HOSTD_OPERATOR_USER={} HOSTD_RUNTIME_PACKAGES={} bash {dir}/provision.sh {dir} 2>&1; rc=$?; rm -rf {dir}; exit $rc",
            shell_quote(operator),
            shell_quote(&packages.join(" ")),
            dir = shell_quote(dir),
        );
        let mut run = self
            .transport
            .spawn_remote(self.host, &["sh", "-c", &script])
            .map_err(|e| self.failed("provision", e.to_string()))?;
        let follow = async {
            let mut last = Vec::new();
            while let Some(line) = run.next_line().await {
                let line = String::from_utf8_lossy(&line).into_owned();
                let _ = writeln!(progress, "{}: {line}", self.host.name);
                last.push(line);
                if last.len() > 5 {
                    last.remove(0);
                }
            }
            (run.finish().await, last)
        };
        let (ended, last) = tokio::time::timeout(self.timeout, follow)
            .await
            .map_err(|_| {
                self.failed(
                    "provision",
                    format!("no end after {}s", self.timeout.as_secs()),
                )
            })?;
        ended.map_err(|e| {
            self.failed(
                "provision",
                format!("{e}; last lines: {}", last.join(" / ")),
            )
        })?;
        // The operator is in the `hostd` group now, which only a new login
        // carries.
        self.transport.end_shared_connection(self.host).await;
        Ok(())
    }

    /// What a boot of the image starts: every unit provisioning enabled.
    pub async fn start(&self) -> Result<(), SetupError> {
        self.sh(
            "start",
            "sudo -n systemctl daemon-reload && sudo -n systemctl start multi-user.target",
            b"",
        )
        .await
        .map(|_| ())
    }

    /// hostd's status once it answers and knows its build (bounded).
    pub async fn serving(&self) -> Result<HostStatus, SetupError> {
        let began = Instant::now();
        let path = format!("{API_PREFIX}/status");
        loop {
            let asked = self
                .transport
                .call::<HostStatus>(self.host, Method::GET, &path, None, Duration::from_secs(15))
                .await;
            match asked {
                // The build is hashed in the background at start.
                Ok(status) if status.hostd_build.is_some() || began.elapsed() >= SERVE_TIMEOUT => {
                    return Ok(status);
                }
                Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(e) if began.elapsed() >= SERVE_TIMEOUT => {
                    return Err(self.failed("wait for hostd", e.to_string()));
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// hostd on another build than the one installed (a host set up
    /// before): restarted on it, which stops none of its services.
    pub async fn restart_hostd(&self) -> Result<(), SetupError> {
        self.sh("restart hostd", "sudo -n systemctl restart hostd", b"")
            .await
            .map(|_| ())
    }
}
