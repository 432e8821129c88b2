//! What is wrong with hostctl.toml, or with what the flags ask of it: each
//! message names the file, and the line and key where there is one.

use std::path::{Path, PathBuf};

use super::{FILE_NAME, services};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no {FILE_NAME} in {} or any parent directory; run hostctl from your project directory, or pass --config PATH (or set HOSTCTL_CONFIG)",
        start.display()
    )]
    NotFound { start: PathBuf },
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", located(path, *line, key, message))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        /// Dotted key, empty for a syntax error.
        key: String,
        message: String,
    },
    #[error("{} defines no environments; add one, e.g. [environments.prod] with hosts = [\"web1\"]", path.display())]
    NoEnvironments { path: PathBuf },
    #[error("unknown environment {name:?}; {} defines: {}", path.display(), known.join(", "))]
    UnknownEnvironment {
        path: PathBuf,
        name: String,
        known: Vec<String>,
    },
    #[error("which environment? {} defines {} and no default_environment; pass -e ENV", path.display(), known.join(", "))]
    NoEnvironmentSelected { path: PathBuf, known: Vec<String> },
    #[error("unknown service {name:?}; {} {}", path.display(), services::configured(known))]
    UnknownService {
        path: PathBuf,
        name: String,
        known: Vec<String>,
    },
    #[error("{} configures several services ({}); pick one with --service", path.display(), known.join(", "))]
    WhichService { path: PathBuf, known: Vec<String> },
    #[error(
        "{}: environment {environment} sets no hostd_config{}; set `hostd_config = \"PATH\"` under [environments.{environment}] (the hostd.toml its hosts run; PATH relative to the directory of {FILE_NAME}), or under [hosts.NAME] for a host with a file of its own",
        path.display(),
        for_hosts(hosts)
    )]
    NoHostdConfig {
        path: PathBuf,
        environment: String,
        /// The hosts lacking one, when others have their own; else empty.
        hosts: Vec<String>,
    },
    #[error("unknown task {name:?}; {} {}", path.display(), services::configured_tasks(service, known))]
    UnknownTask {
        path: PathBuf,
        service: String,
        name: String,
        known: Vec<String>,
    },
}

fn for_hosts(hosts: &[String]) -> String {
    if hosts.is_empty() {
        String::new()
    } else {
        let have = if hosts.len() == 1 { "has" } else { "have" };
        format!(" and {} {have} none of its own", hosts.join(", "))
    }
}

fn located(path: &Path, line: Option<usize>, key: &str, message: &str) -> String {
    let mut out = path.display().to_string();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
    }
    if !key.is_empty() {
        out.push_str(&format!(": key {key}"));
    }
    out.push_str(&format!(": {message}"));
    out
}
