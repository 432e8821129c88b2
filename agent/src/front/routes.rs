//! What the front routes where: written by hostd (root) to a file only root
//! can write, read by the front at start and on SIGHUP. Each service's
//! public listener (a socket unit named after the service) forwards to its
//! instances' private ports on loopback.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A routes file is a few hundred bytes; anything near this is not hostd's.
pub const MAX_ROUTES_BYTES: u64 = 1 << 20;
/// More instances than `max_instances` allows (64) is not hostd's either.
const MAX_BACKENDS: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// Keyed by the service's name, which is also the name of its listening
    /// socket (`FileDescriptorName=`).
    pub services: BTreeMap<String, ServiceRoute>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRoute {
    /// The instances' ports on 127.0.0.1, in the order hostd added them.
    pub backends: Vec<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("cannot read the routes file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the routes file {path} is larger than {MAX_ROUTES_BYTES} bytes")]
    TooLarge { path: String },
    #[error("the routes file {path} is not hostd's: {reason}")]
    Invalid { path: String, reason: String },
}

/// The routes in `path`; none when hostd has written none yet.
pub fn load(path: &Path) -> Result<RoutesFile, RoutesError> {
    let shown = path.display().to_string();
    let read = |source| RoutesError::Read {
        path: shown.clone(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RoutesFile::default()),
        Err(e) => return Err(read(e)),
    };
    if meta.len() > MAX_ROUTES_BYTES {
        return Err(RoutesError::TooLarge { path: shown });
    }
    let text = std::fs::read(path).map_err(read)?;
    parse(&text).map_err(|reason| RoutesError::Invalid {
        path: shown,
        reason,
    })
}

pub fn parse(text: &[u8]) -> Result<RoutesFile, String> {
    let routes: RoutesFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    for (name, route) in &routes.services {
        if route.backends.len() > MAX_BACKENDS {
            return Err(format!("{name} has more than {MAX_BACKENDS} backends"));
        }
        if route.backends.contains(&0) {
            return Err(format!("{name} has a backend on port 0"));
        }
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_no_routes_and_a_strange_one_is_refused() -> Result<(), RoutesError> {
        let dir = tempfile::tempdir().map_err(|source| RoutesError::Read {
            path: String::new(),
            source,
        })?;
        assert_eq!(
            load(&dir.path().join("routes.json"))?,
            RoutesFile::default()
        );
        assert!(parse(br#"{"services":{"web":{"backends":[3001,3002]}}}"#).is_ok());
        for bad in [
            &br#"{"services":{"web":{"backends":[0]}}}"#[..],
            br#"{"services":{"web":{"backends":[3001],"evil":1}}}"#,
            br#"{"services":{"web":{"backends":[70000]}}}"#,
            b"not json",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        Ok(())
    }
}
