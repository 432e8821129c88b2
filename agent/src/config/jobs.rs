//! `[jobs.NAME]`: commands hostd runs on a schedule, as a systemd timer and
//! service it generates (see `crate::jobs`).

use std::time::Duration;

use serde::Deserialize;

use super::values::HumanDuration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// systemd calendar syntax (`OnCalendar=`): `hourly`, `*-*-* 03:00:00`,
    /// `Mon..Fri *-*-* 09:00`. Checked with `systemd-analyze calendar`.
    pub schedule: String,
    /// Run with `/bin/sh -c`. With `service`, in the service's current
    /// release directory (so `bin/cleanup` is the release's); without, it
    /// must start with an absolute path.
    pub command: String,
    /// An app service (one with `release_dir`): the job runs from its
    /// current release with its user, environment and secrets.
    #[serde(default)]
    pub service: Option<String>,
    /// The user of a job without `service`. Unset: a dynamic user of its
    /// own (systemd's `DynamicUser=`), which can write nowhere lasting.
    #[serde(default)]
    pub user: Option<String>,
    /// systemd stops a run that takes longer (and records `timeout`).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// A random delay up to this added to each run, to spread hosts.
    #[serde(default = "default_randomized_delay")]
    pub randomized_delay: HumanDuration,
    /// Whether a run may start while the previous one still runs. `false`:
    /// a run due meanwhile is skipped (systemd does not start a running
    /// service again) and `hostctl jobs run` is refused. `true`: every run
    /// is an instance of its own (see `crate::jobs::instances`).
    #[serde(default)]
    pub overlap: bool,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

fn default_randomized_delay() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}

/// Why `schedule` is not one systemd accepts: asks systemd's own parser
/// (`systemd-analyze calendar`), so hostd and the timer never disagree.
pub fn check_calendar(schedule: &str) -> Result<(), String> {
    if schedule.trim().is_empty() || schedule.chars().any(char::is_control) {
        return Err(format!(
            "{schedule:?} is not a calendar expression (one line, like `hourly` or `*-*-* 03:00:00`)"
        ));
    }
    let out = std::process::Command::new("systemd-analyze")
        .args(["calendar", "--iterations=1", "--", schedule])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run systemd-analyze to check {schedule:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.lines().next().unwrap_or("").trim();
    Err(format!(
        "{schedule:?} is not a systemd calendar expression (OnCalendar=): {said}"
    ))
}

impl JobConfig {
    /// Rules beyond each field's own; `services` is hostd.toml's. Returns
    /// the key (below `jobs.NAME`) and the message.
    pub(super) fn validate(
        &self,
        services: &std::collections::BTreeMap<String, super::ServiceConfig>,
    ) -> Result<(), (&'static str, String)> {
        check_calendar(&self.schedule).map_err(|m| ("schedule", m))?;
        if self.command.trim().is_empty() || self.command.chars().any(char::is_control) {
            return Err(("command", "must be one non-empty line".into()));
        }
        match &self.service {
            Some(name) => {
                let deployable: Vec<&str> = services
                    .iter()
                    .filter(|(_, s)| s.release_dir.is_some())
                    .map(|(n, _)| n.as_str())
                    .collect();
                if !deployable.contains(&name.as_str()) {
                    return Err((
                        "service",
                        format!(
                            "`{name}` is not an app service with a release_dir; those are: {}",
                            if deployable.is_empty() {
                                "none".to_owned()
                            } else {
                                deployable.join(", ")
                            }
                        ),
                    ));
                }
                if self.user.is_some() {
                    return Err((
                        "user",
                        "a job of a service runs as the service's user; drop `user`".into(),
                    ));
                }
            }
            None if !self.command.starts_with('/') => {
                return Err((
                    "command",
                    "without `service` there is no release to run from: start with an absolute path"
                        .into(),
                ));
            }
            None => {}
        }
        if let Some(user) = &self.user
            && !is_user_name(user)
        {
            return Err(("user", format!("`{user}` is not a user name")));
        }
        if self.timeout.0 < Duration::from_secs(1) {
            return Err(("timeout", "must be at least 1s".into()));
        }
        Ok(())
    }
}

/// What useradd accepts, short of its locale quirks.
fn is_user_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.len() <= 32
}
