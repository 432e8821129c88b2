//! What a service's processes run as, read from systemd: a deploy hook runs
//! with the same user, environment and credentials as the service itself,
//! so a migration sees exactly what the release will.

use super::{Systemd, SystemdError};
use crate::config::UnitName;

/// The parts of a unit's execution context a hook inherits. Holds names,
/// paths and `Environment=` lines; credentials stay files (`LoadCredential=`
/// name and path), never values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecContext {
    pub user: String,
    pub group: String,
    pub environment: Vec<String>,
    /// Paths, and whether a missing file is fine (`-` prefix).
    pub environment_files: Vec<(String, bool)>,
    /// Credential name and the file it is loaded from.
    pub load_credentials: Vec<(String, String)>,
}

impl ExecContext {
    /// `systemd-run` properties that recreate this context.
    pub fn properties(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.user.is_empty() {
            p.push(format!("User={}", self.user));
        }
        if !self.group.is_empty() {
            p.push(format!("Group={}", self.group));
        }
        // systemd-run splits the value at spaces and unescapes it, as in a
        // unit file: one quoted word per assignment keeps it whole.
        p.extend(self.environment.iter().map(|e| {
            format!(
                "Environment=\"{}\"",
                e.replace('\\', "\\\\").replace('"', "\\\"")
            )
        }));
        for (path, optional) in &self.environment_files {
            let dash = if *optional { "-" } else { "" };
            p.push(format!("EnvironmentFile={dash}{path}"));
        }
        for (name, path) in &self.load_credentials {
            p.push(format!("LoadCredential={name}:{path}"));
        }
        p
    }
}

impl Systemd {
    pub async fn exec_context(&self, unit: &UnitName) -> Result<ExecContext, SystemdError> {
        let prop = |source| SystemdError::Property {
            unit: unit.to_string(),
            source,
        };
        let service = self.service_proxy(unit).await?;
        let (user, group, environment, environment_files, load_credentials) = tokio::try_join!(
            service.user(),
            service.group(),
            service.environment(),
            service.environment_files(),
            service.load_credential(),
        )
        .map_err(prop)?;
        Ok(ExecContext {
            user,
            group,
            environment,
            environment_files,
            load_credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_recreate_the_context() {
        let c = ExecContext {
            user: "api".into(),
            group: "api".into(),
            environment: vec![
                "HEALTH_SOCKET=/run/api/1/health.sock".into(),
                r#"DATABASE_URL=host=/run/postgresql user=api say="hi\""#.into(),
            ],
            environment_files: vec![("/etc/hostd/api.env".into(), true)],
            load_credentials: vec![(
                "database_url".into(),
                "/run/hostd/credentials/api/database_url".into(),
            )],
        };
        assert_eq!(
            c.properties(),
            [
                "User=api",
                "Group=api",
                r#"Environment="HEALTH_SOCKET=/run/api/1/health.sock""#,
                r#"Environment="DATABASE_URL=host=/run/postgresql user=api say=\"hi\\\"""#,
                "EnvironmentFile=-/etc/hostd/api.env",
                "LoadCredential=database_url:/run/hostd/credentials/api/database_url",
            ]
        );
        assert!(ExecContext::default().properties().is_empty());
    }
}
