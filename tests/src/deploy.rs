//! Deploy fixtures: a project directory with a hostctl.toml whose
//! `[services.backend]` ships `dist/`, release contents staged into it, and
//! a raw line to hostd's control API for what hostctl would refuse to send.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::Sandbox;

/// A project as an operator has it: hostctl.toml and the artifact `dist/`.
pub struct Project {
    pub dir: TempDir,
    pub config: PathBuf,
}

impl Project {
    /// `hosts` as one environment; `service` is the body of
    /// `[services.backend]` after `artifact` and `unit` (hooks, timeouts).
    pub fn new(hosts: &[&Sandbox], service: &str) -> Result<Project> {
        Self::with_artifact(hosts, "dist", service)
    }

    /// The same with another artifact path (relative to the project).
    pub fn with_artifact(hosts: &[&Sandbox], artifact: &str, service: &str) -> Result<Project> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("hostctl.toml");
        let names: Vec<String> = hosts.iter().map(|h| format!("{:?}", h.name)).collect();
        let mut text = format!("[environments.test]\nhosts = [{}]\n", names.join(", "));
        for h in hosts {
            text.push_str(&h.host_table());
        }
        text.push_str(&format!(
            "[services.backend]\nartifact = {artifact:?}\nunit = \"api@.service\"\n{service}\n"
        ));
        std::fs::write(&config, text)?;
        Ok(Project { dir, config })
    }

    /// Makes `dist/` the release `version` (the broken build if `broken`).
    pub fn stage(&self, version: &str, broken: bool) -> Result<()> {
        let release = crate::release::release_dir(version, broken)?;
        let dist = self.dir.path().join("dist");
        if dist.exists() {
            std::fs::remove_dir_all(&dist)?;
        }
        let out = Command::new("cp")
            .arg("-a")
            .arg(release.path())
            .arg(&dist)
            .output()?;
        ensure!(
            out.status.success(),
            "cp: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    pub fn command(&self, s: &Sandbox, args: &[&str]) -> Command {
        let mut c = s.hostctl_command_with(&self.config, args);
        c.current_dir(self.dir.path());
        c
    }

    pub fn hostctl(&self, s: &Sandbox, args: &[&str]) -> Result<Output> {
        Ok(self.command(s, args).output()?)
    }

    /// Adds `[services.NAME]` shipping `dist/` as `unit`, `body` after.
    pub fn add_service(&self, name: &str, unit: &str, body: &str) -> Result<()> {
        let mut text = std::fs::read_to_string(&self.config)?;
        text.push_str(&format!(
            "[services.{name}]\nartifact = \"dist\"\nunit = {unit:?}\n{body}\n"
        ));
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    /// `hostctl deploy backend --version V --json ARGS`: (exit code, summary).
    pub fn deploy(
        &self,
        s: &Sandbox,
        version: &str,
        args: &[&str],
    ) -> Result<(i32, Vec<serde_json::Value>, String)> {
        self.deploy_service(s, "backend", version, args)
    }

    /// The same for another service of the project.
    pub fn deploy_service(
        &self,
        s: &Sandbox,
        service: &str,
        version: &str,
        args: &[&str],
    ) -> Result<(i32, Vec<serde_json::Value>, String)> {
        let mut all = vec!["deploy", service, "--version", version, "--json"];
        all.extend_from_slice(args);
        let out = self.hostctl(s, &all)?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let summary = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "deploy --json printed no JSON array; stdout: {} stderr: {stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        Ok((out.status.code().unwrap_or(-1), summary, stderr))
    }

    /// `hostctl releases --json` for one host: its answer.
    pub fn releases(&self, s: &Sandbox) -> Result<serde_json::Value> {
        let out = self.hostctl(s, &["releases", "--json", "--host", &s.name])?;
        let all: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).with_context(|| {
                format!("releases --json: {}", String::from_utf8_lossy(&out.stdout))
            })?;
        all.into_iter()
            .next()
            .map(|a| a["answer"].clone())
            .context("releases --json answered no host")
    }
}

/// What the API answers on /version now.
pub fn version_served(s: &Sandbox) -> Result<String> {
    let r = crate::http_get(format!("{}:8080", s.address).parse()?, "/version")?;
    ensure!(
        r.status == 200,
        "/version answered {}: {}",
        r.status,
        r.body
    );
    Ok(r.body.trim().to_owned())
}

/// One request straight to hostd's control API through `ssh … hostd
/// dial-stdio`, as any member of the hostd group could send it: for
/// checking hostd's own refusals of what hostctl never sends.
pub fn control_raw(
    s: &Sandbox,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let mut child = Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
        ])
        .arg(format!("UserKnownHostsFile={}", s.known_hosts.display()))
        .arg("-i")
        .arg(&s.identity_file)
        .arg(format!("admin@{}", s.address))
        .args(["--", "hostd", "dial-stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: hostd\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stdin.write_all(head.as_bytes())?;
    stdin.write_all(body)?;
    // dial-stdio relays until both sides end, and hostd would drop a
    // request whose client half-closed: stdin stays open until the answer
    // is complete, then closes.
    let mut raw = Vec::new();
    let mut stdout = child.stdout.take().context("no stdout")?;
    let mut buf = [0u8; 64 * 1024];
    while !complete(&raw) {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    drop(stdin);
    let _ = child.wait();
    parse_response(&raw)
}

/// Whether `raw` holds a whole HTTP answer (by length, or the last chunk).
fn complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|len| body.len() >= len)
}

fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP head in hostd's answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let rest = &raw[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Ok((status, rest.to_vec()));
    }
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
            bail!("a chunk without its size line");
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[at..at + eol]).trim(), 16)?;
        at += eol + 2;
        if size == 0 {
            return Ok((status, body));
        }
        ensure!(at + size <= rest.len(), "a cut chunk");
        body.extend_from_slice(&rest[at..at + size]);
        at += size + 2;
    }
}

/// A tar whose entries are written exactly as given, names unchecked:
/// (name, kind, link target or content).
pub fn crafted_tar(entries: &[(&str, TarKind, &str)]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (name, kind, data) in entries {
        let mut h = [0u8; 512];
        ensure!(name.len() < 100 && data.len() < 100 || *kind == TarKind::File);
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
            let s = format!("{v:0w$o}\0", w = width - 1);
            h[at..at + width].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, 0o755);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        let size = if *kind == TarKind::File {
            data.len() as u64
        } else {
            0
        };
        octal(&mut h, 124, 12, size);
        octal(&mut h, 136, 12, 0);
        h[156] = match kind {
            TarKind::File => b'0',
            TarKind::Symlink => b'2',
            TarKind::Dir => b'5',
        };
        if *kind == TarKind::Symlink {
            h[157..157 + data.len()].copy_from_slice(data.as_bytes());
        }
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        if *kind == TarKind::File {
            out.extend_from_slice(data.as_bytes());
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarKind {
    File,
    Symlink,
    Dir,
}

/// sha256 of `data`, lowercase hex: an artifact's name on the host.
pub fn digest(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crafted_tars_read_back_with_their_names_unchanged() -> Result<()> {
        let tar = crafted_tar(&[
            ("../escape", TarKind::File, "x"),
            ("up", TarKind::Symlink, "../../.."),
        ])?;
        let out = Command::new("tar")
            .args(["-tvf", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                if let Some(mut i) = c.stdin.take() {
                    i.write_all(&tar)?;
                }
                c.wait_with_output()
            })?;
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("../escape"), "{listing}");
        assert!(listing.contains("up -> ../../.."), "{listing}");
        Ok(())
    }

    #[test]
    fn chunked_answers_are_joined() -> Result<()> {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw)?, (200, b"abcde".to_vec()));
        Ok(())
    }
}
