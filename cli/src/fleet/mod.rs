//! Reaching every host of an environment, the one way all commands do it.
//! Reads go to every host at once. Changes go batch by batch (one host at
//! a time unless `--batch-size` says otherwise) and stop after the first
//! batch in which a host failed: a change that breaks one host must not
//! reach the others. Results come back in the order of `hosts`, which is
//! hostctl.toml's, whatever order the hosts answered in.

mod batches;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::HostTarget;
use crate::exit::{CommandError, Failure};
use crate::targets::TargetError;
use crate::transport::{Transport, TransportError};

pub use batches::{Changed, Outcome, Part, Turn, in_batches, in_batches_watched};

/// What can fail in a read of every host (`status`, `releases`, `lock`):
/// which hosts, reaching them, writing what they said. A host that did
/// not answer is in the output, not here.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

impl CommandError for ReadError {
    fn failure(&self) -> Failure<'_> {
        match self {
            Self::Target(_) => Failure::Usage,
            Self::Transport(e) => Failure::Transport(e),
            Self::Output(e) => Failure::Output(e),
        }
    }
}

/// Every host at once (or whatever stands for each host: a process
/// running there), each with `ask`; the results in the same order. The
/// futures are polled together in the caller's task, so they may borrow
/// from it.
pub async fn parallel<I: IntoIterator, T, F>(hosts: I, ask: impl FnMut(I::Item) -> F) -> Vec<T>
where
    F: Future<Output = T>,
{
    futures_util::future::join_all(hosts.into_iter().map(ask)).await
}

/// One request to every host at once, on a connection of each host's own,
/// its JSON answer decoded as `T`. `timeout` bounds each host's exchange,
/// ssh connect included.
pub async fn call_all<T: DeserializeOwned>(
    transport: &Transport,
    hosts: &[HostTarget],
    method: Method,
    path: &str,
    timeout: Duration,
) -> Vec<Result<T, TransportError>> {
    parallel(hosts, |target| {
        transport.call::<T>(target, method.clone(), path, None, timeout)
    })
    .await
}

/// One host's answer to a read, as `--json` of `releases`, `lock` and
/// `jobs` prints it.
#[derive(Debug, Serialize)]
pub struct Answer<T> {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<T> Answer<T> {
    pub fn new(target: &HostTarget, result: Result<T, TransportError>) -> Self {
        let (answer, error) = split(result);
        Self {
            host: target.name.clone(),
            answer,
            error,
        }
    }

    /// Each host's answer to one request.
    pub async fn from_all(
        transport: &Transport,
        hosts: &[HostTarget],
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Vec<Self>
    where
        T: DeserializeOwned,
    {
        let results = call_all(transport, hosts, method, path, timeout).await;
        hosts
            .iter()
            .zip(results)
            .map(|(h, r)| Self::new(h, r))
            .collect()
    }

    /// A read fails (exit 1) when a host did not answer.
    pub fn exit_code(answers: &[Self]) -> ExitCode {
        if answers.iter().all(|a| a.error.is_none()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// One host's answer to a read, as `backups` and `secrets list` show it:
/// `--json` puts the fields of `T` (the answer under its own name) beside
/// the host's name and address.
#[derive(Debug, Serialize)]
pub struct Reply<T> {
    pub host: String,
    pub address: String,
    #[serde(flatten)]
    pub answer: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<T> Reply<T> {
    /// Each host's answer to `GET path`, decoded and named by `name`.
    pub async fn get_all<A: DeserializeOwned>(
        transport: &Transport,
        hosts: &[HostTarget],
        path: &str,
        timeout: Duration,
        name: impl Fn(A) -> T,
    ) -> Vec<Self> {
        let results = call_all::<A>(transport, hosts, Method::GET, path, timeout).await;
        hosts
            .iter()
            .zip(results)
            .map(|(target, result)| {
                let (answer, error) = split(result.map(&name));
                Self {
                    host: target.name.clone(),
                    address: target.destination.clone(),
                    answer,
                    error,
                }
            })
            .collect()
    }

    /// `Err` with the hosts that gave no answer, if any.
    pub fn all_answered(replies: &[Self]) -> Result<(), Vec<String>> {
        let failed: Vec<String> = replies
            .iter()
            .filter(|r| r.error.is_some())
            .map(|r| r.host.clone())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }
}

/// The answer, or the error as the operator reads it.
pub fn split<T>(result: Result<T, TransportError>) -> (Option<T>, Option<String>) {
    match result {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(hostd_api::error_chain(&e))),
    }
}

#[cfg(test)]
mod tests;
