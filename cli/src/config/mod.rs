//! hostctl.toml: discovery, parsing and validation into [`Config`], whose
//! hosts carry everything needed to reach them and whose services say how
//! to deploy them.

mod error;
mod hostd_config;
#[cfg(test)]
mod hostd_config_tests;
#[cfg(test)]
mod proptests;
mod raw;
mod services;
#[cfg(test)]
mod services_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
pub use hostd_config::{HostdConfigFile, HostdConfigs};
use raw::{Located, RawConfig, RawHost, RawSsh, line_of};
use services::SpannedError;
pub use services::{
    DEFAULT_HEALTH_PATH, DEFAULT_HEALTH_TIMEOUT, DEFAULT_HOOK_TIMEOUT, DEFAULT_KEEP, DeployService,
    Hooks, Task,
};
use toml::Spanned;

pub const FILE_NAME: &str = "hostctl.toml";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HOSTD_PATH: &str = "hostd";
/// How hostctl reaches hostd as root, for `upgrade-hostd`.
pub const DEFAULT_ROOT_HOSTD_PATH: &str = "sudo -n hostd";

/// A validated hostctl.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub default_environment: Option<String>,
    /// Environment name → its hosts, in the order the file lists them.
    pub environments: BTreeMap<String, Vec<HostTarget>>,
    /// `[services.NAME]` tables: how each service is deployed.
    pub services: BTreeMap<String, DeployService>,
    /// The hostd.toml files the hosts run (`hostctl diff`, `apply`).
    pub hostd_config: HostdConfigs,
}

/// One host of an environment with `[ssh]` defaults and `[hosts.X]`
/// overrides merged, and paths made absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTarget {
    /// The name used in `environments.*.hosts`.
    pub name: String,
    /// What ssh connects to: `[hosts.X].address`, or the name itself.
    pub destination: String,
    /// False when the name is no `[hosts.X]` table and went to ssh verbatim
    /// (typically a ~/.ssh/config alias); used to explain resolve failures.
    pub from_table: bool,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub options: Vec<String>,
    pub connect_timeout: Duration,
    pub hostd_path: String,
    /// hostd as root on the host, for what only root may ask
    /// (`upgrade-hostd`): `sudo -n hostd` unless hostctl.toml says.
    pub root_hostd_path: String,
}

impl HostTarget {
    /// The same host, reached as root.
    pub fn as_root(&self) -> HostTarget {
        HostTarget {
            hostd_path: self.root_hostd_path.clone(),
            ..self.clone()
        }
    }
}

impl Config {
    /// Finds and loads the config: `explicit` if given, else the nearest
    /// hostctl.toml from `cwd` upwards.
    pub fn discover(explicit: Option<&Path>, cwd: &Path) -> Result<Self, ConfigError> {
        let path = match explicit {
            Some(p) => cwd.join(p),
            None => find_upwards(cwd).ok_or_else(|| ConfigError::NotFound {
                start: cwd.to_path_buf(),
            })?,
        };
        Self::load(&path)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_str(&text, path)
    }

    /// Parses `text` as if read from `path` (which names errors and anchors
    /// relative paths).
    pub fn from_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw = raw::parse(text).map_err(|l: Located| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: l.line,
            key: l.key,
            message: l.message,
        })?;
        resolve(raw, text, path)
    }

    pub fn environment_names(&self) -> Vec<String> {
        self.environments.keys().cloned().collect()
    }

    /// The environment chosen by `-e`, else `default_environment`, else the
    /// only one.
    pub fn select(&self, requested: Option<&str>) -> Result<(&str, &[HostTarget]), ConfigError> {
        let known = self.environment_names();
        let name = match requested.or(self.default_environment.as_deref()) {
            Some(name) => name,
            None if known.len() == 1 => known[0].as_str(),
            None if known.is_empty() => {
                return Err(ConfigError::NoEnvironments {
                    path: self.path.clone(),
                });
            }
            None => {
                return Err(ConfigError::NoEnvironmentSelected {
                    path: self.path.clone(),
                    known,
                });
            }
        };
        match self.environments.get_key_value(name) {
            Some((name, hosts)) => Ok((name.as_str(), hosts.as_slice())),
            None => Err(ConfigError::UnknownEnvironment {
                path: self.path.clone(),
                name: name.to_owned(),
                known,
            }),
        }
    }
}

fn find_upwards(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(FILE_NAME))
        .find(|candidate| candidate.is_file())
}

fn resolve(raw: RawConfig, text: &str, path: &Path) -> Result<Config, ConfigError> {
    let invalid =
        |span: Option<std::ops::Range<usize>>, key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: span.map(|s| line_of(text, s.start)),
            key,
            message,
        };
    let base_dir = path.parent().unwrap_or(Path::new("."));

    check_ssh(&raw.ssh).map_err(|(key, msg)| invalid(None, format!("ssh.{key}"), msg))?;
    for (name, host) in &raw.hosts {
        check_host(host.get_ref())
            .map_err(|(key, msg)| invalid(Some(host.span()), format!("hosts.{name}.{key}"), msg))?;
    }

    let mut environments = BTreeMap::new();
    for (env_name, env) in &raw.environments {
        let hosts = environment_hosts(env_name, &env.get_ref().hosts, &raw, base_dir)
            .map_err(|(span, key, msg)| invalid(Some(span), key, msg))?;
        environments.insert(env_name.clone(), hosts);
    }

    let hostd_config = hostd_config::resolve(&raw, base_dir)
        .map_err(|(span, key, msg)| invalid(Some(span), key, msg))?;

    let default_environment = match raw.default_environment {
        Some(d) if !environments.contains_key(d.get_ref()) => {
            let known: Vec<&str> = environments.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            return Err(invalid(
                Some(d.span()),
                "default_environment".into(),
                format!("no environment named {:?}; defined: {known}", d.get_ref()),
            ));
        }
        Some(d) => Some(d.into_inner()),
        None => None,
    };

    let services = services::resolve_services(raw.services, base_dir)
        .map_err(|(span, key, msg)| invalid(Some(span), key, msg))?;

    Ok(Config {
        path: path.to_path_buf(),
        default_environment,
        environments,
        services,
        hostd_config,
    })
}

/// One environment's hosts, each a `[hosts.X]` table or else an ssh
/// destination; errors carry the span of the offending entry.
fn environment_hosts(
    env_name: &str,
    hosts: &Spanned<Vec<Spanned<String>>>,
    raw: &RawConfig,
    base_dir: &Path,
) -> Result<Vec<HostTarget>, SpannedError> {
    let key = format!("environments.{env_name}.hosts");
    if hosts.get_ref().is_empty() {
        return Err((
            hosts.span(),
            key,
            "empty host list; name at least one [hosts.X] table or ssh destination".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut targets = Vec::new();
    for entry in hosts.get_ref() {
        let name = entry.get_ref();
        if !seen.insert(name.as_str()) {
            return Err((entry.span(), key, format!("host {name:?} is listed twice")));
        }
        let target = match raw.hosts.get(name) {
            Some(host) => from_table(name, host.get_ref(), &raw.ssh, base_dir),
            None => {
                check_destination(name).map_err(|msg| {
                    let hint = if raw.hosts.is_empty() {
                        String::new()
                    } else {
                        let known: Vec<&str> = raw.hosts.keys().map(String::as_str).collect();
                        format!(
                            " (it is no [hosts.X] table either; those are: {})",
                            known.join(", ")
                        )
                    };
                    (
                        entry.span(),
                        key.clone(),
                        format!("host {name:?}: {msg}{hint}"),
                    )
                })?;
                from_destination(name, &raw.ssh, base_dir)
            }
        };
        targets.push(target);
    }
    Ok(targets)
}

type KeyError = (&'static str, String);

fn check_ssh(ssh: &RawSsh) -> Result<(), KeyError> {
    if let Some(user) = &ssh.user {
        check_word(user).map_err(|m| ("user", m))?;
    }
    if let Some(p) = &ssh.hostd_path
        && p.trim().is_empty()
    {
        return Err(("hostd_path", "must not be empty".into()));
    }
    if let Some(p) = &ssh.root_hostd_path
        && p.trim().is_empty()
    {
        return Err(("root_hostd_path", "must not be empty".into()));
    }
    if ssh.connect_timeout.is_some_and(|t| t.is_zero()) {
        return Err(("connect_timeout", "must be more than zero".into()));
    }
    check_options(ssh.options.as_deref().unwrap_or_default()).map_err(|m| ("options", m))
}

fn check_host(host: &RawHost) -> Result<(), KeyError> {
    check_destination(&host.address).map_err(|m| ("address", m))?;
    if let Some(user) = &host.user {
        check_word(user).map_err(|m| ("user", m))?;
    }
    check_options(host.options.as_deref().unwrap_or_default()).map_err(|m| ("options", m))
}

/// Anything starting with `-` would be read by ssh as an option.
fn check_word(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else if s.starts_with('-') {
        Err(format!("{s:?} must not start with '-'"))
    } else if s.chars().any(char::is_whitespace) {
        Err(format!("{s:?} must not contain whitespace"))
    } else {
        Ok(())
    }
}

fn check_destination(s: &str) -> Result<(), String> {
    check_word(s).map_err(|m| format!("not a usable ssh destination: {m}"))
}

fn check_options(options: &[String]) -> Result<(), String> {
    for opt in options {
        let (key, value) = opt
            .split_once(['=', ' '])
            .ok_or_else(|| format!("{opt:?} is not of the form Key=Value"))?;
        let (key, value) = (
            key.trim().to_ascii_lowercase(),
            value.trim().to_ascii_lowercase(),
        );
        // Host-key checking protects the credentials ssh is about to send.
        if key == "stricthostkeychecking" && matches!(value.as_str(), "no" | "off") {
            return Err(format!(
                "{opt:?} is refused: hostctl never disables host key checking; set known_hosts_file instead"
            ));
        }
    }
    Ok(())
}

fn from_table(name: &str, host: &RawHost, ssh: &RawSsh, base: &Path) -> HostTarget {
    HostTarget {
        name: name.to_owned(),
        destination: host.address.clone(),
        from_table: true,
        user: host.user.clone().or_else(|| ssh.user.clone()),
        port: host.port.or(ssh.port),
        identity_file: host
            .identity_file
            .as_ref()
            .or(ssh.identity_file.as_ref())
            .map(|p| absolute(p, base)),
        known_hosts_file: host
            .known_hosts_file
            .as_ref()
            .or(ssh.known_hosts_file.as_ref())
            .map(|p| absolute(p, base)),
        options: host
            .options
            .clone()
            .or_else(|| ssh.options.clone())
            .unwrap_or_default(),
        connect_timeout: ssh.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        hostd_path: ssh
            .hostd_path
            .clone()
            .unwrap_or_else(|| DEFAULT_HOSTD_PATH.into()),
        root_hostd_path: ssh
            .root_hostd_path
            .clone()
            .unwrap_or_else(|| DEFAULT_ROOT_HOSTD_PATH.into()),
    }
}

fn from_destination(name: &str, ssh: &RawSsh, base: &Path) -> HostTarget {
    HostTarget {
        name: name.to_owned(),
        destination: name.to_owned(),
        from_table: false,
        user: ssh.user.clone(),
        port: ssh.port,
        identity_file: ssh.identity_file.as_ref().map(|p| absolute(p, base)),
        known_hosts_file: ssh.known_hosts_file.as_ref().map(|p| absolute(p, base)),
        options: ssh.options.clone().unwrap_or_default(),
        connect_timeout: ssh.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        hostd_path: ssh
            .hostd_path
            .clone()
            .unwrap_or_else(|| DEFAULT_HOSTD_PATH.into()),
        root_hostd_path: ssh
            .root_hostd_path
            .clone()
            .unwrap_or_else(|| DEFAULT_ROOT_HOSTD_PATH.into()),
    }
}

/// Relative paths mean "next to hostctl.toml", so a checked-in config works
/// from any subdirectory; `~/` is the operator's home, as in ssh_config.
fn absolute(p: &Path, base: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    base.join(p)
}
