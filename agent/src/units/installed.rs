//! A configured service whose unit systemd does not know and hostd does not
//! ship can never start: hostd would keep the host unhealthy for good. Found
//! by `hostd check-config`, before the config reaches a running hostd.

use crate::config::{Config, UnitName};
use crate::systemd::{SystemdError, UnitStates};

/// `services.NAME.unit` names a unit that is not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotInstalled {
    pub service: String,
    pub unit: UnitName,
}

impl std::fmt::Display for NotInstalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key `services.{}.unit`: systemd has no unit {} and hostd ships none (install it, or fix the name)",
            self.service, self.unit
        )
    }
}

/// The services whose unit is neither loadable by systemd nor among the
/// unit files hostd installs or writes at start (`units.source_dir`, apps
/// declared by `command`): on a host being provisioned, those are
/// installed by hostd itself.
pub async fn not_installed(
    config: &Config,
    systemd: &impl UnitStates,
) -> Result<Vec<NotInstalled>, SystemdError> {
    let mut missing = Vec::new();
    for (service, svc) in &config.services {
        // An app's unit is written by hostd itself at start.
        if svc.is_app() || config.units.source_dir.join(svc.unit.as_str()).is_file() {
            continue;
        }
        // A template has no state of its own; any instance shows whether
        // its template file exists.
        let probe = svc.unit.instance(1).unwrap_or_else(|| svc.unit.clone());
        if systemd.unit_state(&probe).await?.load_state == "not-found" {
            missing.push(NotInstalled {
                service: service.clone(),
                unit: svc.unit.clone(),
            });
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::UnitState;
    use hostd_api::ActiveState;

    /// Knows exactly the units it was given.
    struct Known(Vec<&'static str>);

    impl UnitStates for Known {
        async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, SystemdError> {
            let known = self.0.contains(&unit.as_str());
            Ok(UnitState {
                load_state: if known { "loaded" } else { "not-found" }.into(),
                active_state: ActiveState::Inactive,
                sub_state: "dead".into(),
            })
        }
    }

    fn config(source_dir: &std::path::Path) -> Result<Config, Box<dyn std::error::Error>> {
        let text = format!(
            "[units]\nsource_dir = {:?}\n\n\
             [services.api]\nunit = \"api@.service\"\n\n\
             [services.redis]\nunit = \"redis-server.service\"\n\n\
             [services.ghost]\nunit = \"nonexistent.service\"\n\n\
             [services.worker]\nunit = \"worker.service\"\n\n\
             [services.web]\ncommand = \"bin/web\"\nrelease_dir = \"/srv/web\"\n",
            source_dir.display().to_string()
        );
        Ok(Config::parse(std::path::Path::new("hostd.toml"), &text)?)
    }

    #[tokio::test]
    /// `web`, an app declared by `command`, is not named: hostd writes its
    /// unit at start.
    async fn names_only_services_whose_unit_nobody_has() -> Result<(), Box<dyn std::error::Error>> {
        let shipped = tempfile::tempdir()?;
        std::fs::write(shipped.path().join("worker.service"), "[Service]\n")?;
        let config = config(shipped.path())?;
        let systemd = Known(vec!["api@1.service", "redis-server.service"]);

        let missing = not_installed(&config, &systemd).await?;
        assert_eq!(
            missing,
            [NotInstalled {
                service: "ghost".into(),
                unit: UnitName::try_from("nonexistent.service".to_owned())?,
            }]
        );
        assert!(missing[0].to_string().contains("services.ghost.unit"));
        Ok(())
    }

    #[tokio::test]
    async fn a_template_counts_as_installed_only_when_its_instances_load()
    -> Result<(), Box<dyn std::error::Error>> {
        let shipped = tempfile::tempdir()?;
        let config = config(shipped.path())?;
        let systemd = Known(vec![
            "redis-server.service",
            "nonexistent.service",
            "worker.service",
        ]);
        let missing = not_installed(&config, &systemd).await?;
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].service, "api");
        Ok(())
    }
}
