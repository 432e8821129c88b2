//! Fixtures for the integration suite: a booted sandbox host driven through
//! the real `hostctl` and `hostd` binaries of this workspace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

pub mod backup;
pub mod cloudwatch;
pub mod config;
pub mod deploy;
pub mod load;
pub mod load_kept;
pub mod release;
mod ssm;

pub use backup::Repo;

/// The directory holding the workspace's built binaries (`target/debug`),
/// found from this test executable (`target/debug/deps/sandbox-HASH`).
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target directory")?
        .to_owned();
    for bin in ["hostctl", "hostd", "hostd-front"] {
        ensure!(
            dir.join(bin).is_file(),
            "{} is missing: build the binaries first (`cargo build --workspace --bins`, which tests/run does)",
            dir.join(bin).display()
        );
    }
    Ok(dir)
}

/// Runs `f` until it returns `Ok(Some(_))` or the deadline passes; the last
/// error or "still false" explains a timeout. Replaces sleeps as
/// synchronisation: the wait is as short as the condition allows.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition never held");
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for a child with a deadline (killing it when the deadline
/// passes), then reads what it wrote to piped stdout and stderr. For
/// children whose output fits a pipe's buffer, as hostctl's summaries do.
pub fn finish(
    mut child: std::process::Child,
    what: &str,
    timeout: Duration,
) -> Result<std::process::Output> {
    use std::io::Read;
    let status = match poll(what, timeout, || Ok(child.try_wait()?)) {
        Ok(status) => status,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout)?;
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut stderr)?;
    }
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// A bare HTTP/1.0 GET: enough to read /health without pulling an HTTP
/// client into the suite, and it shows exactly what a load balancer sends.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse> {
    http_request(addr, "GET", path, "")
}

pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    Ok(HttpResponse {
        status,
        body: body.to_owned(),
    })
}

/// A sandbox host booted by `hostctl sandbox up`, torn down on drop.
pub struct Sandbox {
    pub name: String,
    pub address: String,
    pub hostctl_toml: PathBuf,
    pub identity_file: PathBuf,
    pub known_hosts: PathBuf,
    bins: PathBuf,
}

impl Sandbox {
    /// A sandbox host with hostd, its load and disk checks blind to the
    /// machine beneath (see [`Sandbox::ignore_the_machine_beneath`]).
    pub fn up(name: &str) -> Result<Sandbox> {
        let hostd = bin_dir()?.join("hostd");
        let s = Self::boot(name, &["--hostd".as_ref(), hostd.as_os_str()])?;
        s.ignore_the_machine_beneath()?;
        Ok(s)
    }

    /// A host as an EC2 base image boots: nothing of hostd's, the operator
    /// with passwordless sudo (for Packer to provision).
    pub fn up_bare(name: &str) -> Result<Sandbox> {
        Self::boot(name, &["--bare".as_ref()])
    }

    fn boot(name: &str, setup: &[&std::ffi::OsStr]) -> Result<Sandbox> {
        let bins = bin_dir()?;
        let out = Command::new(bins.join("hostctl"))
            .args(["sandbox", "up", "--name", name, "--json"])
            .args(setup)
            .output()?;
        ensure!(
            out.status.success(),
            "hostctl sandbox up failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "sandbox up printed: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        let field = |k: &str| -> Result<String> {
            info[k]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("sandbox up --json has no `{k}`: {info}"))
        };
        Ok(Sandbox {
            name: name.to_owned(),
            address: field("address")?,
            hostctl_toml: PathBuf::from(field("hostctl_toml")?),
            identity_file: PathBuf::from(field("identity_file")?),
            known_hosts: PathBuf::from(field("known_hosts")?),
            bins,
        })
    }

    pub fn health_addr(&self) -> Result<SocketAddr> {
        Ok(format!("{}:7780", self.address).parse()?)
    }

    /// `hostctl ARGS` with no config (for `sandbox` subcommands).
    pub fn hostctl_bare(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(self.bins.join("hostctl"))
            .args(args)
            .output()?)
    }

    /// This host as a `[hosts.NAME]` table, for fleet configs.
    pub fn host_table(&self) -> String {
        format!(
            "[hosts.{}]\naddress = \"{}\"\nuser = \"admin\"\nidentity_file = \"{}\"\nknown_hosts_file = \"{}\"\n",
            self.name,
            self.address,
            self.identity_file.display(),
            self.known_hosts.display()
        )
    }

    /// `hostctl --config <sandbox's hostctl.toml> ARGS`.
    pub fn hostctl(&self, args: &[&str]) -> Result<Output> {
        self.hostctl_with_config(&self.hostctl_toml, args)
    }

    pub fn hostctl_with_config(&self, config: &Path, args: &[&str]) -> Result<Output> {
        Ok(self.hostctl_command_with(config, args).output()?)
    }

    /// The `hostctl` command, to spawn and read as it runs.
    pub fn hostctl_command(&self, args: &[&str]) -> Command {
        self.hostctl_command_with(&self.hostctl_toml, args)
    }

    /// The same with another hostctl.toml (deploy projects, fleets).
    pub fn hostctl_command_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(self.bins.join("hostctl"));
        c.arg("--config")
            .arg(config)
            .args(args)
            .env("NO_COLOR", "1");
        c
    }

    /// Runs a shell command as root inside the sandbox (the test's hands on
    /// the host, like an operator's `sudo`): returns stdout, fails on non-zero.
    pub fn root_sh(&self, script: &str) -> Result<String> {
        let out = self.root_sh_output(script)?;
        ensure!(
            out.status.success(),
            "`{script}` in sandbox failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn root_sh_output(&self, script: &str) -> Result<Output> {
        Ok(Command::new(self.bins.join("hostctl"))
            .args([
                "sandbox", "exec", "--name", &self.name, "--", "/bin/sh", "-c", script,
            ])
            .output()?)
    }

    /// `hostctl status --json` with this sandbox's config: (exit code, hosts).
    pub fn status_json(&self) -> Result<(i32, Vec<serde_json::Value>)> {
        self.status_json_with(&self.hostctl_toml)
    }

    /// The same with another hostctl.toml (fleets, unreachable hosts).
    pub fn status_json_with(&self, config: &Path) -> Result<(i32, Vec<serde_json::Value>)> {
        let out = self.hostctl_with_config(config, &["status", "--json"])?;
        let hosts = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "status --json printed no JSON array; stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok((out.status.code().unwrap_or(-1), hosts))
    }

    /// Waits until the running hostd has brought every service to its
    /// desired state (its start-up reconcile logs a line in this invocation's
    /// journal): before that, hostd may start a unit the caller just stopped.
    pub fn wait_reconciled(&self) -> Result<()> {
        poll(
            "hostd's start-up reconcile",
            Duration::from_secs(60),
            || {
                let out = self.root_sh_output(
                "journalctl -o cat _SYSTEMD_INVOCATION_ID=$(systemctl show -P InvocationID hostd.service)",
            )?;
                let log = String::from_utf8_lossy(&out.stdout);
                Ok(log
                    .contains("every service is in its desired state")
                    .then_some(()))
            },
        )
    }

    /// What an operator or another process on the host can read, where a
    /// secret value must never appear: hostd's journal, every process's
    /// arguments, /health, /metrics and `hostctl status --json`. Each is
    /// checked to be non-empty, so a search of them proves something.
    pub fn observable_places(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let addr = self.health_addr()?;
        let places = vec![
            (
                "hostd's journal",
                self.root_sh_output("journalctl -u hostd -o cat")?.stdout,
            ),
            (
                "/proc/*/cmdline",
                self.root_sh_output("cat /proc/[0-9]*/cmdline 2>/dev/null; true")?
                    .stdout,
            ),
            ("/health", http_get(addr, "/health")?.body.into_bytes()),
            ("/metrics", http_get(addr, "/metrics")?.body.into_bytes()),
            (
                "hostctl status --json",
                self.hostctl(&["status", "--json"])?.stdout,
            ),
        ];
        for (place, text) in &places {
            ensure!(!text.is_empty(), "{place} is empty: nothing was checked");
        }
        Ok(places)
    }

    /// A systemd property of a unit, read inside the sandbox.
    pub fn unit_property(&self, unit: &str, property: &str) -> Result<String> {
        let out = self.root_sh(&format!("systemctl show -P {property} {unit}"))?;
        Ok(out.trim().to_owned())
    }

    fn down(&self) -> Result<()> {
        let out = Command::new(self.bins.join("hostctl"))
            .args(["sandbox", "down", "--name", &self.name])
            .output()?;
        ensure!(
            out.status.success(),
            "hostctl sandbox down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            eprintln!("warning: could not tear down sandbox {}: {e:#}", self.name);
        }
    }
}
