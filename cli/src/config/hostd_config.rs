//! `hostd_config = "PATH"`: the hostd.toml in the operator's repository
//! that the hosts of an environment run (`[environments.NAME]`), or that
//! one host runs instead (`[hosts.NAME]`). `hostctl diff` and `hostctl
//! apply` send it to hostd.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::raw::RawConfig;
use super::services::SpannedError;
use super::{Config, ConfigError, HostTarget};

/// A hostd.toml of the operator's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostdConfigFile {
    /// The path as hostctl.toml writes it (`hostd/production.toml`): hostd
    /// names it in its errors and its ledger, so the operator reads the
    /// file of their repository, not the host's copy.
    pub source: String,
    /// Where to read it.
    pub path: PathBuf,
}

/// Every `hostd_config` of hostctl.toml, by table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostdConfigs {
    pub environments: BTreeMap<String, HostdConfigFile>,
    pub hosts: BTreeMap<String, HostdConfigFile>,
}

pub(super) fn resolve(raw: &RawConfig, base_dir: &Path) -> Result<HostdConfigs, SpannedError> {
    let mut configs = HostdConfigs::default();
    for (name, env) in &raw.environments {
        if let Some(value) = &env.get_ref().hostd_config {
            let key = format!("environments.{name}.hostd_config");
            let file = file(value, base_dir).map_err(|m| (value.span(), key, m))?;
            configs.environments.insert(name.clone(), file);
        }
    }
    for (name, host) in &raw.hosts {
        if let Some(value) = &host.get_ref().hostd_config {
            let key = format!("hosts.{name}.hostd_config");
            let file = file(value, base_dir).map_err(|m| (value.span(), key, m))?;
            configs.hosts.insert(name.clone(), file);
        }
    }
    Ok(configs)
}

/// Relative only: `source` is what hostd records and shows, and a path
/// of the operator's own machine means nothing on the host.
fn file(value: &Spanned<String>, base_dir: &Path) -> Result<HostdConfigFile, String> {
    let written = Path::new(value.get_ref());
    let absolute = written.has_root() || written.starts_with("~");
    if absolute {
        return Err(format!(
            "{:?} must be relative to the directory of hostctl.toml (the repository), e.g. \"hostd/production.toml\"",
            value.get_ref()
        ));
    }
    // `./hostd//x.toml` is recorded as `hostd/x.toml`.
    let parts: Vec<String> = written
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.is_empty() {
        return Err("must name a file, e.g. \"hostd/production.toml\"".into());
    }
    Ok(HostdConfigFile {
        source: parts.join("/"),
        path: base_dir.join(written),
    })
}

impl Config {
    /// The file `host` runs: its own `hostd_config`, else its
    /// environment's. A host without one fails the whole command, before
    /// any host is asked anything.
    pub fn hostd_configs<'t>(
        &self,
        environment: &str,
        hosts: &'t [HostTarget],
    ) -> Result<Vec<(&'t HostTarget, &HostdConfigFile)>, ConfigError> {
        let own = |h: &HostTarget| self.hostd_config.hosts.get(&h.name);
        let shared = self.hostd_config.environments.get(environment);
        let mut found = Vec::with_capacity(hosts.len());
        let mut missing = Vec::new();
        for host in hosts {
            match own(host).or(shared) {
                Some(file) => found.push((host, file)),
                None => missing.push(host.name.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        // Naming the hosts helps only when some have a file of their own.
        Err(ConfigError::NoHostdConfig {
            path: self.path.clone(),
            environment: environment.to_owned(),
            hosts: if found.is_empty() {
                Vec::new()
            } else {
                missing
            },
        })
    }
}
