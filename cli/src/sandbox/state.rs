//! The state directory: paths, per-sandbox state.json, the lock, names,
//! and the files we render for operators (hostctl.toml, known_hosts).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::SandboxError;
use super::proc::Proc;

pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/hostctl/sandbox";
/// Names used by shared resources; a sandbox may not take them.
const RESERVED_NAMES: &[&str] = &["aws"];

/// Where everything lives.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub base: PathBuf,
}

impl Layout {
    pub(crate) fn from_env() -> Layout {
        let base = std::env::var_os("HOSTCTL_SANDBOX_DIR")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from);
        Layout { base }
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }
    pub(crate) fn state_file(&self, name: &str) -> PathBuf {
        self.dir(name).join("state.json")
    }
    pub(crate) fn root(&self, name: &str) -> PathBuf {
        self.dir(name).join("root")
    }
    pub(crate) fn hostctl_toml(&self, name: &str) -> PathBuf {
        self.dir(name).join("hostctl.toml")
    }
    pub(crate) fn identity(&self, name: &str) -> PathBuf {
        self.dir(name).join("id_ed25519")
    }
    pub(crate) fn known_hosts(&self, name: &str) -> PathBuf {
        self.dir(name).join("known_hosts")
    }
    pub(crate) fn console_log(&self, name: &str) -> PathBuf {
        self.dir(name).join("console.log")
    }
    pub(crate) fn aws_dir(&self) -> PathBuf {
        self.base.join("aws")
    }

    pub(crate) fn create_base(&self) -> Result<(), SandboxError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.base)
            .map_err(|e| SandboxError::io("create the state directory", &self.base, e))
    }

    /// Exclusive lock on `base/FILE`, held until the guard is dropped.
    pub(crate) async fn lock(&self, file: &str) -> Result<Flock<File>, SandboxError> {
        self.create_base()?;
        let path = self.base.join(file);
        tokio::task::spawn_blocking(move || {
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| SandboxError::io("open the lock file", &path, e))?;
            Flock::lock(f, FlockArg::LockExclusive)
                .map_err(|(_, e)| SandboxError::io("lock", &path, e.into()))
        })
        .await
        .map_err(|e| SandboxError::Invalid {
            what: "lock task failed",
            detail: e.to_string(),
        })?
    }

    /// Like [`Layout::lock`] but returns `None` instead of waiting.
    pub(crate) fn try_lock(&self, file: &str) -> Option<Flock<File>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.base.join(file))
            .ok()?;
        Flock::lock(f, FlockArg::LockExclusiveNonblock).ok()
    }

    /// Every sandbox with a state.json, sorted by name.
    pub(crate) fn all(&self) -> Result<Vec<SandboxState>, SandboxError> {
        let entries = match std::fs::read_dir(&self.base) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SandboxError::io("read the state directory", &self.base, e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if validate_name(&name).is_err() {
                continue;
            }
            if let Some(s) = self.load(&name)? {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) fn load(&self, name: &str) -> Result<Option<SandboxState>, SandboxError> {
        let path = self.state_file(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| SandboxError::State { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SandboxError::io("read sandbox state", path, e)),
        }
    }

    pub(crate) fn save(&self, s: &SandboxState) -> Result<(), SandboxError> {
        let path = self.state_file(&s.name);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(s).map_err(|source| SandboxError::State {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, text).map_err(|e| SandboxError::io("write sandbox state", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| SandboxError::io("write sandbox state", &path, e))
    }
}

/// Persistent facts about one sandbox (NAME/state.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SandboxState {
    pub name: String,
    pub index: u32,
    pub address: String,
    /// systemd-nspawn, once started.
    pub nspawn: Option<Proc>,
    /// `root/` is an overlay mount (otherwise a plain copy).
    pub overlay: bool,
    /// The IMDSv2 stand-in in the sandbox's namespace, once started.
    #[serde(default)]
    pub imds: Option<Proc>,
}

impl SandboxState {
    pub(crate) fn is_running(&self) -> bool {
        self.nspawn.is_some_and(|p| p.is_alive())
    }
}

/// `[a-z0-9][a-z0-9-]{0,11}`: the name goes into interface names (15 chars
/// max: "hs-" + name) and network namespace names.
pub(crate) fn validate_name(name: &str) -> Result<(), SandboxError> {
    let invalid = |reason| {
        Err(SandboxError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return invalid("it is empty"),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            return invalid("it must start with a-z or 0-9");
        }
        Some(_) => {}
    }
    if name.len() > 12 {
        return invalid("it is longer than 12 characters");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return invalid("only a-z, 0-9 and '-' are allowed");
    }
    if RESERVED_NAMES.contains(&name) {
        return invalid("it is reserved for the AWS stand-in");
    }
    Ok(())
}

/// `HOST KEYTYPE KEY` for the sandbox's public host key file contents
/// (`KEYTYPE KEY [COMMENT]`); the comment is dropped.
pub(crate) fn known_hosts_line(address: &str, host_pub: &str) -> Result<String, SandboxError> {
    let mut parts = host_pub.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(kind), Some(key)) if kind.starts_with("ssh-") || kind.starts_with("ecdsa-") => {
            Ok(format!("{address} {kind} {key}\n"))
        }
        _ => Err(SandboxError::Invalid {
            what: "unexpected SSH host public key format",
            detail: host_pub.trim().to_owned(),
        }),
    }
}

/// The hostctl.toml that targets one sandbox.
pub(crate) fn render_hostctl_toml(
    name: &str,
    address: &str,
    user: &str,
    identity: &Path,
    known_hosts: &Path,
) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        "default_environment = \"sandbox\"\n\
         [ssh]\n\
         user = {user}\n\
         identity_file = {identity}\n\
         known_hosts_file = {known_hosts}\n\
         [environments.sandbox]\n\
         hosts = [{name_q}]\n\
         [hosts.{name}]\n\
         address = {address}\n",
        user = q(user),
        identity = q(&identity.to_string_lossy()),
        known_hosts = q(&known_hosts.to_string_lossy()),
        name_q = q(name),
        address = q(address),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["sandbox", "a", "0", "web-1", "abcdefghijkl"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "A",
            "abcdefghijklm",
            "a_b",
            "a.b",
            "aws",
            "a b",
            "é",
            ".lock",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_hosts_drops_comment() {
        let line = known_hosts_line("10.231.0.10", "ssh-ed25519 AAAAC3Nz root@x\n");
        assert_eq!(
            line.ok().as_deref(),
            Some("10.231.0.10 ssh-ed25519 AAAAC3Nz\n")
        );
        assert!(known_hosts_line("10.231.0.10", "").is_err());
        assert!(known_hosts_line("10.231.0.10", "garbage").is_err());
    }

    #[test]
    fn hostctl_toml_exact_and_parseable() {
        let text = render_hostctl_toml(
            "web1",
            "10.231.0.11",
            "admin",
            Path::new("/var/lib/hostctl/sandbox/web1/id_ed25519"),
            Path::new("/var/lib/hostctl/sandbox/web1/known_hosts"),
        );
        assert_eq!(
            text,
            r#"default_environment = "sandbox"
[ssh]
user = "admin"
identity_file = "/var/lib/hostctl/sandbox/web1/id_ed25519"
known_hosts_file = "/var/lib/hostctl/sandbox/web1/known_hosts"
[environments.sandbox]
hosts = ["web1"]
[hosts.web1]
address = "10.231.0.11"
"#
        );
        let v: toml::Table = toml::from_str(&text).unwrap_or_default();
        assert_eq!(
            v.get("hosts")
                .and_then(|h| h.get("web1"))
                .and_then(|h| h.get("address"))
                .and_then(|a| a.as_str()),
            Some("10.231.0.11")
        );
    }

    #[test]
    fn odd_paths_are_escaped() {
        let text = render_hostctl_toml(
            "x",
            "10.231.0.10",
            "admin",
            Path::new("/tmp/a\"b\\c/id"),
            Path::new("/tmp/k"),
        );
        let v: Result<toml::Table, _> = toml::from_str(&text);
        assert_eq!(
            v.ok()
                .and_then(|v| v["ssh"]["identity_file"].as_str().map(str::to_owned))
                .as_deref(),
            Some("/tmp/a\"b\\c/id")
        );
    }
}
