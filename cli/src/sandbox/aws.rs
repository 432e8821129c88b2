//! The AWS stand-in: moto in network namespace `hostctl-aws` at
//! 10.231.0.2:5000, shared by all sandboxes. Callers hold the state lock.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use super::SandboxError;
use super::cmd::{Cmd, SANE_PATH};
use super::net::{self, AWS_ADDRESS, AWS_NETNS_NAME};
use super::proc::Proc;
use super::state::Layout;

pub(crate) const PORT: u16 = 5000;
pub(crate) const REGION: &str = "us-east-1";
pub(crate) const BUCKET: &str = "hostd-sandbox";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Marks a venv whose `pip install` finished.
const VENV_DONE: &str = ".hostctl-complete";

pub(crate) fn endpoint() -> String {
    format!("http://{AWS_ADDRESS}:{PORT}")
}

fn venv(layout: &Layout) -> PathBuf {
    layout.aws_dir().join("venv")
}
fn pid_file(layout: &Layout) -> PathBuf {
    layout.aws_dir().join("moto.json")
}
pub(crate) fn log_file(layout: &Layout) -> PathBuf {
    layout.aws_dir().join("moto.log")
}

/// Start moto (and its venv, namespace, bridge) unless it already runs, wait
/// until it answers, and create the bucket and SSM parameters. Idempotent.
pub(crate) async fn ensure(layout: &Layout) -> Result<(), SandboxError> {
    let dir = layout.aws_dir();
    std::fs::create_dir_all(&dir).map_err(|e| SandboxError::io("create", &dir, e))?;
    ensure_venv(layout).await?;
    net::ensure_bridge().await?;
    net::ensure_namespace(AWS_NETNS_NAME, AWS_ADDRESS).await?;
    let moto = match running(layout) {
        Some(p) => p,
        None => start(layout)?,
    };
    wait_ready(layout, moto).await?;
    seed(layout).await
}

async fn ensure_venv(layout: &Layout) -> Result<(), SandboxError> {
    let venv = venv(layout);
    if venv.join(VENV_DONE).exists() {
        return Ok(());
    }
    // Scripts in a venv hold absolute paths, so it is built in place and
    // marked complete at the end; an unmarked one is rebuilt.
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .map_err(|e| SandboxError::io("remove an incomplete venv", &venv, e))?;
    }
    info!("creating the moto venv at {} (once)", venv.display());
    Cmd::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .run("create the moto venv (apt-get install python3-venv)")
        .await?;
    Cmd::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "moto[server]"])
        .run("install moto[server] from PyPI into the venv")
        .await?;
    std::fs::write(venv.join(VENV_DONE), b"")
        .map_err(|e| SandboxError::io("mark the venv complete", &venv, e))
}

/// The recorded moto process, if it is still alive.
fn running(layout: &Layout) -> Option<Proc> {
    let text = std::fs::read(pid_file(layout)).ok()?;
    serde_json::from_slice::<Proc>(&text)
        .ok()
        .filter(Proc::is_alive)
}

fn start(layout: &Layout) -> Result<Proc, SandboxError> {
    let log = log_file(layout);
    let out = File::options()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| SandboxError::io("open the moto log", &log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| SandboxError::io("open the moto log", &log, e))?;
    let server = venv(layout).join("bin/moto_server");
    info!("starting moto at {}", endpoint());
    // setsid(1) execs in place (we are not a group leader), as does
    // `ip netns exec`: the PID we get is moto's.
    let child = std::process::Command::new("setsid")
        .args(["ip", "netns", "exec", &net::netns(AWS_NETNS_NAME)])
        .arg(&server)
        .args(["-H", &AWS_ADDRESS.to_string(), "-p", &PORT.to_string()])
        .env("PATH", SANE_PATH)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| SandboxError::io("start moto_server", &server, e))?;
    let pid =
        i32::try_from(child.id()).map_err(|_| SandboxError::AwsExited { log: log.clone() })?;
    let moto = Proc::of(pid).ok_or(SandboxError::AwsExited { log: log.clone() })?;
    let pid_path = pid_file(layout);
    let text = serde_json::to_vec(&moto).map_err(|source| SandboxError::State {
        path: pid_path.clone(),
        source,
    })?;
    std::fs::write(&pid_path, text)
        .map_err(|e| SandboxError::io("record moto's pid", &pid_path, e))?;
    Ok(moto)
}

async fn wait_ready(layout: &Layout, moto: Proc) -> Result<(), SandboxError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if http_answers().await {
            return Ok(());
        }
        if !moto.is_alive() {
            return Err(SandboxError::AwsExited {
                log: log_file(layout),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SandboxError::AwsTimeout {
                endpoint: endpoint(),
                secs: READY_TIMEOUT.as_secs(),
                log: log_file(layout),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One HTTP request to moto; true on any HTTP status line.
async fn http_answers() -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((AWS_ADDRESS, PORT))
            .await
            .ok()?;
        s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: moto\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.ok()?;
        buf.starts_with(b"HTTP/").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(()))
    )
}

/// Bucket and SecureString parameters. Values are random and never printed.
const SEED_PY: &str = r#"
import os, secrets, boto3
kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name=os.environ["AWS_REGION"],
          aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
s3 = boto3.client("s3", **kw)
try:
    s3.create_bucket(Bucket=os.environ["BUCKET"])
except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
    pass
ssm = boto3.client("ssm", **kw)
for name in ("postgres_password", "redis_password", "backup_password", "api_secret_key"):
    try:
        ssm.put_parameter(Name="/hostd/sandbox/" + name, Value=secrets.token_urlsafe(32),
                          Type="SecureString", Overwrite=False)
    except ssm.exceptions.ParameterAlreadyExists:
        pass
"#;

async fn seed(layout: &Layout) -> Result<(), SandboxError> {
    Cmd::new(venv(layout).join("bin/python"))
        .args(["-c", SEED_PY])
        .clean_env()
        .env("ENDPOINT", endpoint())
        .env("AWS_REGION", REGION)
        .env("BUCKET", BUCKET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .run("create the sandbox bucket and SSM parameters in moto")
        .await?;
    Ok(())
}

/// Stop moto by its recorded PID, delete its namespace and the bridge.
pub(crate) async fn stop(layout: &Layout) -> Result<(), SandboxError> {
    if let Some(moto) = running(layout) {
        moto.terminate("moto", Duration::from_secs(10)).await;
    }
    remove_if_present(&pid_file(layout));
    net::delete_namespace(AWS_NETNS_NAME).await?;
    net::delete_bridge().await
}

fn remove_if_present(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!("cannot remove {}: {e}", path.display());
    }
}
