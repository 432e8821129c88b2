//! `[services.NAME]`: what `hostctl deploy NAME` builds, ships and checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawHooks, RawService};
use super::{Config, ConfigError, KeyError, absolute};

pub const DEFAULT_HEALTH_PATH: &str = "/health";
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_KEEP: u32 = 5;
/// The running release and the one a rollback returns to.
const MIN_KEEP: u32 = 2;

/// One `[services.NAME]` table, defaults applied and paths made absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployService {
    pub name: String,
    /// Run with `sh -c` in `dir`.
    pub build: Option<String>,
    /// A directory or a .tar / .tar.gz / .tgz / .tar.zst file, absolute. It
    /// may not exist until `build` has run.
    pub artifact: PathBuf,
    /// The systemd unit (template) a release runs as, e.g. `api@.service`.
    pub unit: String,
    pub health_path: String,
    pub health_timeout: Duration,
    pub hook_timeout: Duration,
    /// Releases kept on the host, at least 2.
    pub keep: u32,
    pub hooks: Hooks,
    /// The directory of hostctl.toml: where `build` runs.
    pub dir: PathBuf,
}

/// Commands run on the host, in the new release's directory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Hooks {
    /// Before the switch, with the service's environment and secrets.
    pub pre_switch: Option<String>,
    /// After every instance is healthy.
    pub post_deploy: Option<String>,
}

impl Config {
    pub fn service(&self, name: &str) -> Result<&DeployService, ConfigError> {
        self.services
            .get(name)
            .ok_or_else(|| ConfigError::UnknownService {
                path: self.path.clone(),
                name: name.to_owned(),
                known: self.services.keys().cloned().collect(),
            })
    }
}

/// The end of the `UnknownService` message: what the file does configure.
pub(super) fn configured(known: &[String]) -> String {
    if known.is_empty() {
        "configures no services; add a [services.NAME] table with artifact and unit".to_owned()
    } else {
        format!("configures: {}", known.join(", "))
    }
}

/// Validates every table; errors carry the table's span and the dotted key.
pub(super) fn resolve_services(
    raw: BTreeMap<String, Spanned<RawService>>,
    base_dir: &Path,
) -> Result<BTreeMap<String, DeployService>, (std::ops::Range<usize>, String, String)> {
    let mut out = BTreeMap::new();
    for (name, table) in raw {
        let span = table.span();
        crate::args::parse_service_name(&name)
            .map_err(|msg| (span.clone(), format!("services.{name}"), msg))?;
        let service = resolve_one(&name, table.into_inner(), base_dir)
            .map_err(|(key, msg)| (span, format!("services.{name}.{key}"), msg))?;
        out.insert(name, service);
    }
    Ok(out)
}

fn resolve_one(name: &str, raw: RawService, base_dir: &Path) -> Result<DeployService, KeyError> {
    check_command(raw.build.as_deref()).map_err(|m| ("build", m))?;
    if raw.artifact.as_os_str().is_empty() {
        // An empty path would resolve to the project directory itself.
        return Err((
            "artifact",
            "must not be empty; name the directory or archive the build produces".into(),
        ));
    }
    check_unit(&raw.unit).map_err(|m| ("unit", m))?;
    let health_path = raw
        .health_path
        .unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_owned());
    if !health_path.starts_with('/') {
        return Err((
            "health_path",
            format!("{health_path:?} must start with '/'"),
        ));
    }
    if health_path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err((
            "health_path",
            format!("{health_path:?} must not contain whitespace"),
        ));
    }
    let health_timeout =
        positive(raw.health_timeout, DEFAULT_HEALTH_TIMEOUT).map_err(|m| ("health_timeout", m))?;
    let hook_timeout =
        positive(raw.hook_timeout, DEFAULT_HOOK_TIMEOUT).map_err(|m| ("hook_timeout", m))?;
    let keep = raw.keep.unwrap_or(DEFAULT_KEEP);
    if keep < MIN_KEEP {
        return Err((
            "keep",
            format!(
                "{keep} is too few: at least {MIN_KEEP} releases are kept, the running one and the one a rollback returns to"
            ),
        ));
    }
    let RawHooks {
        pre_switch,
        post_deploy,
    } = raw.hooks;
    check_command(pre_switch.as_deref()).map_err(|m| ("hooks.pre_switch", m))?;
    check_command(post_deploy.as_deref()).map_err(|m| ("hooks.post_deploy", m))?;
    Ok(DeployService {
        name: name.to_owned(),
        build: raw.build,
        artifact: absolute(&raw.artifact, base_dir),
        unit: raw.unit,
        health_path,
        health_timeout,
        hook_timeout,
        keep,
        hooks: Hooks {
            pre_switch,
            post_deploy,
        },
        dir: base_dir.to_path_buf(),
    })
}

fn check_command(cmd: Option<&str>) -> Result<(), String> {
    match cmd {
        Some(c) if c.trim().is_empty() => {
            Err("must not be empty; leave the key out if there is nothing to run".into())
        }
        _ => Ok(()),
    }
}

/// The name goes to hostd and on to systemd, which would read a `/` as a
/// path and split on whitespace.
fn check_unit(unit: &str) -> Result<(), String> {
    let stem = unit.strip_suffix(".service").unwrap_or_default();
    if stem.is_empty() {
        Err(format!(
            "{unit:?} is no systemd service unit; write e.g. \"api@.service\""
        ))
    } else if unit.contains('/') || unit.chars().any(char::is_whitespace) {
        Err(format!("{unit:?} must not contain '/' or whitespace"))
    } else {
        Ok(())
    }
}

fn positive(value: Option<Duration>, default: Duration) -> Result<Duration, String> {
    match value {
        Some(d) if d.is_zero() => Err("must be more than zero".into()),
        Some(d) => Ok(d),
        None => Ok(default),
    }
}
