//! What hostd keeps running, and what it has seen go wrong. The service
//! manager owns and publishes a [`ManagerView`]; the health checker, the
//! metrics and `GET /v1/status` read it through a `watch` channel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, UnitName};

/// Persisted in `state_dir/desired.json`; restored after a reboot or a
/// hostd restart so `hostctl scale` and `hostctl stop` outlive both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub services: BTreeMap<String, DesiredService>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredService {
    /// false after `hostctl stop`: hostd neither starts nor restarts it.
    pub running: bool,
    /// Instance count of an instanced (template) service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// For an app behind the front: whether its instances are the second
    /// set (numbered from [`SECOND_SET`] + 1). A blue-green replacement
    /// starts the other set beside the one serving.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub second_set: bool,
}

pub use crate::config::SECOND_SET;

impl DesiredState {
    /// The state for a first start: everything running, templates at their
    /// configured `instances` (default 1). Services no longer configured are
    /// dropped and new ones added when `saved` comes from an older config.
    pub fn reconcile_with(config: &Config, saved: Option<&DesiredState>) -> DesiredState {
        let services = config
            .services
            .iter()
            .map(|(name, svc)| {
                let default = DesiredService {
                    second_set: false,
                    running: true,
                    instances: svc
                        .unit
                        .is_template()
                        .then(|| svc.instances.map_or(1, |n| n.0)),
                };
                let kept = saved
                    .and_then(|s| s.services.get(name))
                    .map(|d| DesiredService {
                        running: d.running,
                        second_set: d.second_set && svc.port.is_some(),
                        // A saved count above a lowered max is clamped.
                        instances: default
                            .instances
                            .map(|_| d.instances.unwrap_or(1).clamp(1, svc.max_instances.0)),
                    });
                (name.clone(), kept.unwrap_or(default))
            })
            .collect();
        DesiredState { services }
    }
}

/// One unit hostd should have running, from the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedUnit {
    pub service: String,
    pub unit: UnitName,
    pub instance: Option<u32>,
    /// Whether hostd keeps it running (false: stopped on purpose).
    pub running: bool,
}

/// Every unit the desired state names, in config order: a plain service's
/// unit, or instances 1..=N of a template.
pub fn wanted_units(config: &Config, desired: &DesiredState) -> Vec<WantedUnit> {
    let mut out = Vec::new();
    for (name, svc) in &config.services {
        let Some(d) = desired.services.get(name) else {
            continue;
        };
        match d.instances {
            Some(n) if svc.unit.is_template() => {
                let first = if d.second_set { SECOND_SET } else { 0 };
                for i in first + 1..=first + n {
                    if let Some(unit) = svc.unit.instance(i) {
                        out.push(WantedUnit {
                            service: name.clone(),
                            unit,
                            instance: Some(i),
                            running: d.running,
                        });
                    }
                }
            }
            _ => out.push(WantedUnit {
                service: name.clone(),
                unit: svc.unit.clone(),
                instance: None,
                running: d.running,
            }),
        }
    }
    out
}

/// What the manager publishes after every change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagerView {
    pub desired: DesiredState,
    /// Restarts hostd made after failures, per service, since it started.
    pub restarts: BTreeMap<String, u64>,
    /// Failures hostd saw, per service, since it started (exact: `events`
    /// is bounded and only the recent ones).
    pub failures: BTreeMap<String, u64>,
    /// Recent failures and what hostd did, oldest first, at most
    /// [`MAX_EVENTS`].
    pub events: Vec<hostd_api::UnitEvent>,
}

pub const MAX_EVENTS: usize = 50;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(Path::new("hostd.toml"), text)
    }

    const TWO: &str = "[services.api]\nunit = \"api@.service\"\ninstances = 2\nmax_instances = 4\n\
                       [services.redis]\nunit = \"redis-server.service\"\n";

    #[test]
    fn first_start_runs_everything_at_configured_counts() -> Result<(), Box<dyn std::error::Error>>
    {
        let c = config(TWO)?;
        let d = DesiredState::reconcile_with(&c, None);
        let units: Vec<_> = wanted_units(&c, &d)
            .into_iter()
            .map(|w| w.unit.to_string())
            .collect();
        assert_eq!(
            units,
            ["api@1.service", "api@2.service", "redis-server.service"]
        );
        Ok(())
    }

    #[test]
    fn saved_state_wins_but_is_clamped_and_pruned() -> Result<(), Box<dyn std::error::Error>> {
        let c = config(TWO)?;
        let mut saved = DesiredState::default();
        saved.services.insert(
            "api".into(),
            DesiredService {
                running: true,
                instances: Some(9),
                second_set: false,
            },
        );
        saved.services.insert(
            "redis".into(),
            DesiredService {
                running: false,
                instances: None,
                second_set: false,
            },
        );
        saved.services.insert(
            "gone".into(),
            DesiredService {
                running: true,
                instances: None,
                second_set: false,
            },
        );
        let d = DesiredState::reconcile_with(&c, Some(&saved));
        assert_eq!(d.services["api"].instances, Some(4));
        assert!(!d.services["redis"].running);
        assert!(!d.services.contains_key("gone"));
        Ok(())
    }
}
