//! Raw arguments of `deploy` and `rollback`.

use std::time::Duration;

use clap::Args;

use crate::parse::{parse_duration, parse_lock_wait, parse_service_name};

/// `--version` names the release here, not hostctl's version.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct DeployArgs {
    /// The service, as named by a [services.NAME] table in hostctl.toml
    #[arg(value_name = "SERVICE", value_parser = parse_service_name)]
    pub service: String,
    /// Release name [default: the git commit of the project, with +dirty
    /// and the artifact's digest when tracked files are modified]
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Do not run the service's build command; ship the artifact as it is
    #[arg(long)]
    pub no_build: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct RollbackArgs {
    /// `[SERVICE] [VERSION]`: the service (a [services.NAME] of
    /// hostctl.toml; may be left out when there is only one) and the
    /// release to return to [default: the one before the current one in
    /// the host's ledger]. One word is the service when hostctl.toml
    /// configures a service of that name, else the version
    #[arg(value_name = "SERVICE_OR_VERSION", num_args = 0..=2)]
    pub words: Vec<String>,
    /// The service [default: the only [services.NAME] in hostctl.toml]
    #[arg(long, value_name = "SERVICE", value_parser = parse_service_name)]
    pub service: Option<String>,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

impl RollbackArgs {
    /// (service, version) from the words and `--service`; `is_service`
    /// says whether hostctl.toml configures a service of a name.
    pub fn split(&self, is_service: impl Fn(&str) -> bool) -> (Option<String>, Option<String>) {
        match (self.words.as_slice(), &self.service) {
            ([service, version], None) => (Some(service.clone()), Some(version.clone())),
            ([word], None) if is_service(word) => (Some(word.clone()), None),
            ([word], s) => (s.clone(), Some(word.clone())),
            (_, s) => (s.clone(), self.words.last().cloned()),
        }
    }
}

/// How a change goes across the hosts of an environment.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Hosts changed at once; the next batch starts when the whole batch
    /// serves the new release, and the first failure stops the rest
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Act on this host of the environment only
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Wait this long for a host's operations lock when another operation
    /// (a deploy, a restore) holds it; 0: fail at once
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_lock_wait)]
    pub lock_wait: Duration,
    /// Stop following a host after this long (hostd finishes or rolls back
    /// by itself)
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the per-host summary as a JSON array, and no progress
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    type Split = (Option<String>, Option<String>);

    fn split(argv: &[&str]) -> Result<Split, Box<dyn std::error::Error>> {
        match Cli::try_parse_from(argv)?.command {
            Command::Rollback(a) => Ok(a.split(|w| w == "web" || w == "backend")),
            other => Err(format!("parsed as {other:?}").into()),
        }
    }

    #[test]
    fn rollback_words_are_service_then_version_or_a_lone_version()
    -> Result<(), Box<dyn std::error::Error>> {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(split(&["hostctl", "rollback"])?, (None, None));
        assert_eq!(split(&["hostctl", "rollback", "web"])?, (s("web"), None));
        assert_eq!(split(&["hostctl", "rollback", "v1.2"])?, (None, s("v1.2")));
        assert_eq!(
            split(&["hostctl", "rollback", "web", "v1"])?,
            (s("web"), s("v1"))
        );
        assert_eq!(
            split(&["hostctl", "rollback", "v1", "--service", "web"])?,
            (s("web"), s("v1"))
        );
        Ok(())
    }
}
