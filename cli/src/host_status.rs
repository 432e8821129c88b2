//! A host's status (`GET /v1/status`): what `hostctl status` shows, and
//! what the service commands and `logs` read first, to know the services
//! of every host before anything runs anywhere.

use std::time::Duration;

use hostd_api::{API_PREFIX, HostStatus};
use hyper::Method;

use crate::config::HostTarget;
use crate::fleet;
use crate::transport::{Transport, TransportError};

/// Budget for reading a host's status before acting: the same as
/// `hostctl status`'s default, because this is that call.
pub const BEFORE_ACTING: Duration = Duration::from_secs(30);

/// Every host's status, asked at once; `timeout` bounds each host's
/// exchange, ssh connect included.
pub async fn read_all(
    transport: &Transport,
    hosts: &[HostTarget],
    timeout: Duration,
) -> Vec<Result<HostStatus, TransportError>> {
    let path = format!("{API_PREFIX}/status");
    fleet::call_all(transport, hosts, Method::GET, &path, timeout).await
}

/// What to try when a host's status cannot be read: the transport's hint,
/// and, for a name that is no `[hosts.X]` table, that ssh got it as it is.
pub fn hint(target: &HostTarget, err: &TransportError) -> Option<String> {
    let hint = err.hint();
    let already_said = hint.as_deref().is_some_and(|h| h.contains("[hosts.NAME]"));
    if target.from_table || already_said || !matches!(err, TransportError::Unreachable { .. }) {
        return hint;
    }
    let note = format!(
        "{:?} has no [hosts.{}] table, so it went to ssh as a destination",
        target.name, target.name
    );
    Some(hint.map_or(note.clone(), |h| format!("{h}; {note}")))
}

/// A host whose status could not be read before acting. It reads as the
/// transport's error, which the command's own error names the host before.
#[derive(Debug)]
pub struct Unreadable {
    pub host: String,
    pub hint: Option<String>,
    pub error: Box<TransportError>,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Unreadable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Every host's status, with the host's name, before acting. One
/// unreadable host stops the command before it does anything anywhere.
pub async fn before_acting(
    transport: &Transport,
    hosts: &[HostTarget],
) -> Result<Vec<(String, HostStatus)>, Unreadable> {
    let statuses = read_all(transport, hosts, BEFORE_ACTING).await;
    hosts
        .iter()
        .zip(statuses)
        .map(|(target, status)| match status {
            Ok(s) => Ok((target.name.clone(), s)),
            Err(error) => Err(Unreadable {
                host: target.name.clone(),
                hint: hint(target, &error),
                error: Box::new(error),
            }),
        })
        .collect()
}

/// Services a host knows, sorted: those hostd manages, plus any only seen as
/// units (an older hostd lists no services).
pub fn known_services(status: &HostStatus) -> Vec<String> {
    let mut names: Vec<String> = status
        .services
        .iter()
        .map(|s| s.name.clone())
        .chain(status.units.iter().map(|u| u.service.clone()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}
