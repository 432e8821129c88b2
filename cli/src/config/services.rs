//! `[services.NAME]`: what `hostctl deploy NAME` builds, ships and checks,
//! and the tasks `hostctl run NAME TASK` runs in its release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawHooks, RawService, RawTask};
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
    /// The systemd unit (template) a release runs as, e.g. `api@.service`;
    /// or hostd's name for the service (an app whose unit hostd writes).
    pub unit: String,
    pub health_path: String,
    pub health_timeout: Duration,
    pub hook_timeout: Duration,
    /// Releases kept on the host, at least 2.
    pub keep: u32,
    pub hooks: Hooks,
    /// By name, which is also the order `pre_switch` tasks run in.
    pub tasks: BTreeMap<String, Task>,
    /// The directory of hostctl.toml: where `build` runs.
    pub dir: PathBuf,
}

/// One `[services.NAME.tasks.TASK]` table: a command of the release.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub name: String,
    /// Run with `sh -c` in the release directory, like the hooks.
    pub command: String,
    /// Run before the switch of every deploy; a failure aborts the deploy.
    pub pre_switch: bool,
    /// The service's `hook_timeout` unless set.
    pub timeout: Duration,
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

    /// `--service`, else the only configured one.
    pub fn pick_service(&self, name: Option<&str>) -> Result<&DeployService, ConfigError> {
        if let Some(name) = name {
            return self.service(name);
        }
        match self.services.values().collect::<Vec<_>>().as_slice() {
            [only] => Ok(only),
            _ => Err(ConfigError::WhichService {
                path: self.path.clone(),
                known: self.services.keys().cloned().collect(),
            }),
        }
    }

    /// A service's task, by name.
    pub fn task(&self, service: &str, name: &str) -> Result<(&DeployService, &Task), ConfigError> {
        let svc = self.service(service)?;
        match svc.tasks.get(name) {
            Some(task) => Ok((svc, task)),
            None => Err(ConfigError::UnknownTask {
                path: self.path.clone(),
                service: service.to_owned(),
                name: name.to_owned(),
                known: svc.tasks.keys().cloned().collect(),
            }),
        }
    }
}

impl Task {
    /// hostd counts in whole seconds; rounded up, so it never cuts short.
    pub fn timeout_seconds(&self) -> u64 {
        crate::parse::seconds_rounded_up(self.timeout)
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

/// The end of the `UnknownTask` message: what the service does configure.
pub(super) fn configured_tasks(service: &str, known: &[String]) -> String {
    if known.is_empty() {
        format!(
            "configures no tasks for {service}; add a [services.{service}.tasks.NAME] table with a command"
        )
    } else {
        format!("configures for {service}: {}", known.join(", "))
    }
}

/// A table's span, the dotted key and the message.
pub(super) type SpannedError = (std::ops::Range<usize>, String, String);

/// Validates every table; errors carry the table's span and the dotted key.
pub(super) fn resolve_services(
    raw: BTreeMap<String, Spanned<RawService>>,
    base_dir: &Path,
) -> Result<BTreeMap<String, DeployService>, SpannedError> {
    let mut out = BTreeMap::new();
    for (name, table) in raw {
        let span = table.span();
        crate::parse::parse_service_name(&name)
            .map_err(|e| (span.clone(), format!("services.{name}"), e.to_string()))?;
        let mut raw = table.into_inner();
        let tasks = std::mem::take(&mut raw.tasks);
        let mut service = resolve_one(&name, raw, base_dir)
            .map_err(|(key, msg)| (span, format!("services.{name}.{key}"), msg))?;
        service.tasks = resolve_tasks(tasks, service.hook_timeout)
            .map_err(|(span, key, msg)| (span, format!("services.{name}.tasks.{key}"), msg))?;
        out.insert(name, service);
    }
    Ok(out)
}

/// Errors carry the task table's span, so they point at its own line.
fn resolve_tasks(
    raw: BTreeMap<String, Spanned<RawTask>>,
    default_timeout: Duration,
) -> Result<BTreeMap<String, Task>, SpannedError> {
    let mut out = BTreeMap::new();
    for (name, table) in raw {
        let span = table.span();
        let fail = |key: &str, msg| {
            let key = if key.is_empty() {
                name.clone()
            } else {
                format!("{name}.{key}")
            };
            (span.clone(), key, msg)
        };
        crate::parse::parse_task_name(&name).map_err(|e| fail("", e.to_string()))?;
        let raw = table.into_inner();
        check_one_line(&raw.command).map_err(|m| fail("command", m))?;
        let timeout = positive(raw.timeout, default_timeout).map_err(|m| fail("timeout", m))?;
        let task = Task {
            name: name.clone(),
            command: raw.command,
            pre_switch: raw.pre_switch,
            timeout,
        };
        out.insert(name, task);
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
    // Without a unit, hostd finds the service by this name: an app declared
    // by `command` in hostd.toml, whose unit hostd writes.
    let unit = match raw.unit {
        Some(unit) => {
            check_unit(&unit).map_err(|m| ("unit", m))?;
            unit
        }
        None => name.to_owned(),
    };
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
        unit,
        health_path,
        health_timeout,
        hook_timeout,
        keep,
        hooks: Hooks {
            pre_switch,
            post_deploy,
        },
        tasks: BTreeMap::new(),
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

/// hostd's rule for job commands, kept for tasks: a NUL cannot reach
/// `sh -c` (argument strings end at it), and a line break would split the
/// one-line logs and errors that name the command.
fn check_one_line(cmd: &str) -> Result<(), String> {
    if cmd.trim().is_empty() {
        Err("must not be empty; write what the task runs, e.g. \"bin/migrate\"".into())
    } else if cmd.chars().any(char::is_control) {
        Err("must be one line without control characters (NUL, line breaks, tabs); put a longer script in a file of the release and run that".into())
    } else {
        Ok(())
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
