//! What applying a configuration would change: key by key from the two
//! texts, and from that what each part of hostd must do. Pure, so the dry
//! run (`hostctl diff`) and the apply compute the same plan.

use std::collections::{BTreeMap, BTreeSet};

use hostd_api::{ActionKind, ConfigPlan, KeyChange, PlanAction, UnitFileChange};

use crate::config::Config;

/// Keys whose values may hold a password: shown as changed, never shown.
const HIDDEN: &[&str] = &["checks.postgres", "checks.redis"];

/// Where hostd listens and keeps its state: bound and opened once at
/// start, so a change is applied by restarting hostd. Compared by value:
/// a key written out at its default is no change.
fn at_start(old: &Config, new: &Config) -> Vec<String> {
    let changed = [
        ("health.listen", old.health.listen != new.health.listen),
        ("control.socket", old.control.socket != new.control.socket),
        ("control.group", old.control.group != new.control.group),
        ("state_dir", old.state_dir != new.state_dir),
        (
            "units.source_dir",
            old.units.source_dir != new.units.source_dir,
        ),
        (
            "units.target_dir",
            old.units.target_dir != new.units.target_dir,
        ),
    ];
    changed
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(k, _)| k.to_owned())
        .collect()
}

/// What the secrets delivery reads besides `[secrets]`.
const SECRETS_INPUTS: &[&str] = &["secrets", "checks.redis"];
/// What backups read besides `[backup]`.
const BACKUP_INPUTS: &[&str] = &["backup", "checks.postgres", "checks.redis"];

/// What the parts of hostd must do, derived from the changed keys.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// New or changed services: brought up or restarted through their gate.
    pub restart: Vec<String>,
    /// Services whose declared `instances` (or `max_instances`) alone
    /// changed: scaled to it, nothing restarted.
    pub scale: Vec<String>,
    /// Services no longer declared.
    pub removed: Vec<String>,
    /// Services or jobs changed: the jobs' units are written again.
    pub jobs: bool,
    /// Who receives which secret, or where they come from, changed: the
    /// secrets are fetched and delivered again.
    pub secrets: bool,
    /// `[backup]` or what it reads changed: the backup task takes it.
    pub backup: bool,
    /// Keys that cannot change without a restart of hostd.
    pub at_start: Vec<String>,
}

pub struct Planned {
    pub plan: ConfigPlan,
    pub changes: Changes,
}

/// `old_text`/`new_text` as declared; `old`/`new` parsed from them.
pub fn plan(
    old_text: &str,
    old: &Config,
    new_text: &str,
    new: &Config,
    source: &str,
    units_on_disk: &BTreeMap<String, String>,
) -> Planned {
    let keys = key_changes(&flatten_text(old_text), &flatten_text(new_text));
    let changes = changes_of(&keys, old, new);
    let actions = actions_of(&keys, &changes, old, new);
    let plan = ConfigPlan {
        source: source.to_owned(),
        digest: hostd_api::host_config::digest(new_text),
        current_digest: hostd_api::host_config::digest(old_text),
        keys,
        units: unit_changes(new, units_on_disk),
        actions,
    };
    Planned { plan, changes }
}

fn flatten_text(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // Both texts were parsed already; a failure here cannot happen, and
    // would only make the diff show every key as added.
    if let Ok(table) = text.parse::<toml::Table>() {
        flatten("", &table, &mut out);
    }
    out
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !t.is_empty() => flatten(&key, t, out),
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

fn key_changes(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<KeyChange> {
    let all: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    all.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let shown = |v: Option<&String>| {
                v.map(|v| {
                    if HIDDEN.contains(&k.as_str()) {
                        "(hidden)".to_owned()
                    } else {
                        v.clone()
                    }
                })
            };
            KeyChange {
                key: k.clone(),
                before: shown(old.get(k)),
                after: shown(new.get(k)),
            }
        })
        .collect()
}

fn under(key: &str, section: &str) -> bool {
    key == section
        || key
            .strip_prefix(section)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn changes_of(keys: &[KeyChange], old: &Config, new: &Config) -> Changes {
    let mut c = Changes::default();
    for k in keys {
        if let Some(rest) = k.key.strip_prefix("services.") {
            match rest.split('.').nth(1).unwrap_or_default() {
                "secrets" => c.secrets = true,
                "database" => c.backup = true,
                _ => {}
            }
        }
        c.secrets |= SECRETS_INPUTS.iter().any(|s| under(&k.key, s));
        c.backup |= BACKUP_INPUTS.iter().any(|s| under(&k.key, s));
        if under(&k.key, "jobs") {
            c.jobs = true;
        }
    }
    for name in new.services.keys() {
        let fields = changed_fields(keys, name);
        if !old.services.contains_key(name) {
            c.restart.push(name.clone());
        } else if fields.is_empty() {
            continue;
        } else if fields.iter().all(|f| SCALE_KEYS.contains(f)) {
            c.scale.push(name.clone());
            continue;
        } else {
            c.restart.push(name.clone());
        }
        c.jobs = true;
    }
    c.removed = old
        .services
        .keys()
        .filter(|n| !new.services.contains_key(*n))
        .cloned()
        .collect();
    // (A service that comes or goes with `secrets` or `database` brings
    // those keys into the diff: the loop above has seen them.)
    if !c.removed.is_empty() {
        c.jobs = true;
    }
    c.at_start = at_start(old, new);
    c
}

/// Keys that change how many instances run, not what they run.
const SCALE_KEYS: &[&str] = &["instances", "max_instances"];

/// The keys directly under `services.NAME` that changed.
fn changed_fields<'a>(keys: &'a [KeyChange], name: &str) -> BTreeSet<&'a str> {
    let prefix = format!("services.{name}.");
    keys.iter()
        .filter_map(|k| k.key.strip_prefix(&prefix))
        .map(|f| f.split('.').next().unwrap_or(f))
        .collect()
}

fn actions_of(keys: &[KeyChange], c: &Changes, old: &Config, new: &Config) -> Vec<PlanAction> {
    let mut actions = Vec::new();
    for name in &c.removed {
        let ours = old.services.get(name).is_some_and(|s| s.is_app());
        actions.push(PlanAction {
            kind: ActionKind::Stop,
            target: name.clone(),
            reason: if ours {
                "no longer declared: stopped, its unit removed".into()
            } else {
                "no longer declared: no longer supervised (its unit is left as it is)".into()
            },
        });
    }
    for name in &c.scale {
        let count = |cfg: &Config| {
            cfg.services
                .get(name)
                .and_then(|s| s.instances)
                .map_or_else(|| "1".to_owned(), |n| n.0.to_string())
        };
        actions.push(PlanAction {
            kind: ActionKind::Scale,
            target: name.clone(),
            reason: format!("instances {} -> {}", count(old), count(new)),
        });
    }
    for name in &c.restart {
        let (kind, reason) = if old.services.contains_key(name) {
            let list: Vec<&str> = changed_fields(keys, name).into_iter().collect();
            (ActionKind::Restart, format!("{} changed", list.join(", ")))
        } else {
            (ActionKind::Start, "new service".to_owned())
        };
        actions.push(PlanAction {
            kind,
            target: name.clone(),
            reason,
        });
    }
    if c.jobs {
        let added: Vec<&str> = new
            .jobs
            .keys()
            .filter(|j| !old.jobs.contains_key(*j))
            .map(String::as_str)
            .collect();
        let removed: Vec<&str> = old
            .jobs
            .keys()
            .filter(|j| !new.jobs.contains_key(*j))
            .map(String::as_str)
            .collect();
        let mut reason = Vec::new();
        if !added.is_empty() {
            reason.push(format!("added {}", added.join(", ")));
        }
        if !removed.is_empty() {
            reason.push(format!("removed {}", removed.join(", ")));
        }
        if reason.is_empty() {
            reason.push("units written again".into());
        }
        actions.push(PlanAction {
            kind: ActionKind::Reconfigure,
            target: "jobs".into(),
            reason: reason.join("; "),
        });
    }
    let reconfigure = |target: &str, reason: &str| PlanAction {
        kind: ActionKind::Reconfigure,
        target: target.into(),
        reason: reason.into(),
    };
    if c.secrets {
        actions.push(reconfigure(
            "secrets",
            "fetched and delivered again; services whose credentials change restart",
        ));
    }
    if c.backup {
        actions.push(reconfigure(
            "backup",
            "the next run takes the new settings; a run going finishes with the old",
        ));
    }
    if keys.iter().any(|k| under(&k.key, "metrics")) {
        actions.push(reconfigure(
            "metrics",
            "the EMF writer follows the new settings",
        ));
    }
    if keys.iter().any(|k| under(&k.key, "cloudwatch")) {
        actions.push(reconfigure(
            "cloudwatch",
            "shipping follows the new settings, from where it stopped",
        ));
    }
    if keys
        .iter()
        .any(|k| under(&k.key, "checks") || k.key == "health.check_interval")
    {
        actions.push(PlanAction {
            kind: ActionKind::Reconfigure,
            target: "checks".into(),
            reason: "health checks rebuilt".into(),
        });
    }
    actions
}

/// Generated unit files whose text would change: apps' templates and
/// jobs' timers (a job's service depends on its service's unit as loaded,
/// so it is not rendered here). `on_disk`: those files as they are now.
fn unit_changes(new: &Config, on_disk: &BTreeMap<String, String>) -> Vec<UnitFileChange> {
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for (name, svc) in new.services.iter().filter(|(_, s)| s.is_app()) {
        wanted.insert(
            svc.unit.as_str().to_owned(),
            crate::units::apps::render(name, svc),
        );
    }
    for (name, job) in &new.jobs {
        wanted.insert(
            crate::jobs::units::timer_unit(name),
            crate::jobs::units::render_timer(name, job),
        );
    }
    let units: BTreeSet<&String> = wanted.keys().chain(on_disk.keys()).collect();
    units
        .into_iter()
        .filter(|u| wanted.get(*u) != on_disk.get(*u))
        .map(|u| UnitFileChange {
            unit: u.clone(),
            before: on_disk.get(u).cloned(),
            after: wanted.get(u).cloned(),
        })
        .collect()
}

/// The generated files `unit_changes` compares: apps' templates and
/// jobs' timers in `dir`.
pub fn generated_units(dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = crate::units::apps::app_of_file(&file).is_some()
            || (crate::jobs::units::job_of_file(&file).is_some() && file.ends_with(".timer"));
        if !ours {
            continue;
        }
        // Bounded: a unit file hostd wrote is a few hundred bytes.
        if let Ok(text) = crate::fsutil::read_bounded(&entry.path(), 64 * 1024) {
            out.insert(file, text);
        }
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
