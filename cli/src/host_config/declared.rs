//! The hostd.toml files of the operator's repository, read once each
//! however many hosts run them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use hostd_api::host_config::MAX_CONFIG_BYTES;

use super::HostConfigError;
use crate::config::{Config, HostdConfigFile};
use crate::targets::{TargetError, Targets};

/// A host's declared configuration, as sent to hostd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The path in the repository, as hostctl.toml writes it.
    pub source: String,
    pub text: String,
}

/// Each target's file, in `targets.hosts` order. A host without one, or
/// a file that cannot be sent, stops the command before any host is
/// asked anything.
pub(super) fn read_all(
    config: &Config,
    targets: &Targets,
) -> Result<Vec<Declared>, HostConfigError> {
    let files = config
        .hostd_configs(&targets.environment, &targets.hosts)
        .map_err(TargetError::from)?;
    let mut read: BTreeMap<PathBuf, Declared> = BTreeMap::new();
    let mut declared = Vec::with_capacity(files.len());
    for (_, file) in files {
        let one = match read.get(&file.path) {
            Some(d) => d.clone(),
            None => {
                let d = read_one(file)?;
                read.insert(file.path.clone(), d.clone());
                d
            }
        };
        declared.push(one);
    }
    Ok(declared)
}

/// At most one byte past hostd's bound is read: a file that large is
/// refused here rather than by every host.
pub(super) fn read_one(file: &HostdConfigFile) -> Result<Declared, HostConfigError> {
    let failed = |source| HostConfigError::Read {
        file: file.source.clone(),
        path: file.path.clone(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(&file.path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(HostConfigError::TooBig {
            file: file.source.clone(),
            path: file.path.clone(),
            max: MAX_CONFIG_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        failed(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })?;
    Ok(Declared {
        source: file.source.clone(),
        text,
    })
}
