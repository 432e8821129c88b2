//! Reaching every host of an environment, the one way all commands do it.
//! Reads go to every host at once. Changes go batch by batch (one host at
//! a time unless `--batch-size` says otherwise) and stop after the first
//! batch in which a host failed: a change that breaks one host must not
//! reach the others. Results come back in the order of `hosts`, which is
//! hostctl.toml's, whatever order the hosts answered in.

use std::future::Future;
use std::time::Duration;

use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::HostTarget;
use crate::transport::{Transport, TransportError};

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
        let (answer, error) = match result {
            Ok(a) => (Some(a), None),
            Err(e) => (None, Some(hostd_api::error_chain(&e))),
        };
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
    pub fn all_answered(answers: &[Self]) -> bool {
        answers.iter().all(|a| a.error.is_none())
    }
}

/// How one host took part in a change made batch by batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Part<T> {
    /// The change ran there; `T` says how it went.
    Ran(T),
    /// Not tried: a host of an earlier batch failed.
    Skipped,
}

/// What the watcher of [`in_batches_watched`] is told, host by host in
/// `hosts` order.
#[derive(Debug)]
pub enum Turn<'a, T> {
    /// The change is about to run on this host.
    Begins(&'a HostTarget),
    /// The host's part is over (at once for a skipped host).
    Ends(&'a HostTarget, &'a Part<T>),
}

/// How a change went on one host, as the service commands, `secrets sync`
/// and `backup now` report it (`--json` shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Failed,
    /// Not reached because an earlier host failed.
    NotTouched,
}

/// A change, `size` hosts at a time (at least one); the hosts of a batch
/// change at once, and after a batch in which `failed` holds for a host
/// the remaining hosts are skipped. The parts in `hosts` order.
pub async fn in_batches<'h, T, F>(
    hosts: &'h [HostTarget],
    size: usize,
    change: impl FnMut(&'h HostTarget) -> F,
    failed: impl Fn(&T) -> bool,
) -> Vec<Part<T>>
where
    F: Future<Output = T>,
{
    let unwatched = |_: Turn<'_, T>| Ok::<(), std::convert::Infallible>(());
    let Ok(parts) = in_batches_watched(hosts, size, change, failed, unwatched).await;
    parts
}

/// [`in_batches`], telling `watch` when each host begins and ends, so
/// that what is done so far can be shown while the rest goes on. An error
/// of `watch` (output that cannot be written) stops the change there.
pub async fn in_batches_watched<'h, T, E, F>(
    hosts: &'h [HostTarget],
    size: usize,
    mut change: impl FnMut(&'h HostTarget) -> F,
    failed: impl Fn(&T) -> bool,
    mut watch: impl FnMut(Turn<'_, T>) -> Result<(), E>,
) -> Result<Vec<Part<T>>, E>
where
    F: Future<Output = T>,
{
    let mut parts = Vec::with_capacity(hosts.len());
    let mut stopped = false;
    for batch in hosts.chunks(size.max(1)) {
        if stopped {
            for target in batch {
                let part = Part::Skipped;
                watch(Turn::Ends(target, &part))?;
                parts.push(part);
            }
            continue;
        }
        for target in batch {
            watch(Turn::Begins(target))?;
        }
        let done = futures_util::future::join_all(batch.iter().map(&mut change)).await;
        for (target, result) in batch.iter().zip(done) {
            stopped |= failed(&result);
            let part = Part::Ran(result);
            watch(Turn::Ends(target, &part))?;
            parts.push(part);
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn hosts(names: &[&str]) -> Result<Vec<HostTarget>, crate::config::ConfigError> {
        let names: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        let text = format!("[environments.x]\nhosts = [{}]\n", names.join(", "));
        let config = Config::from_str(&text, Path::new("/p/hostctl.toml"))?;
        Ok(config.select(None)?.1.to_vec())
    }

    /// Resolves once `done` reaches `turn`: host `turn` may finish only
    /// after that many others did, which needs them all running at once.
    async fn wait_for_turn(done: &Cell<usize>, turn: usize) {
        while done.get() != turn {
            tokio::task::yield_now().await;
        }
    }

    /// Bounds a test that would hang if the hosts ran one after the other.
    async fn bounded<T>(f: impl Future<Output = T>) -> Result<T, tokio::time::error::Elapsed> {
        tokio::time::timeout(Duration::from_secs(10), f).await
    }

    #[tokio::test]
    async fn reads_run_at_once_and_come_back_in_host_order() -> TestResult {
        let hosts = hosts(&["a", "b", "c"])?;
        let (done, finished) = (Cell::new(0), RefCell::new(Vec::new()));
        // The last host finishes first, the first host last.
        let answers = bounded(parallel(&hosts, |h| {
            let (done, finished) = (&done, &finished);
            let turn = hosts.len() - 1 - hosts.iter().take_while(|x| x.name != h.name).count();
            async move {
                wait_for_turn(done, turn).await;
                finished.borrow_mut().push(h.name.clone());
                done.set(done.get() + 1);
                format!("{} answered", h.name)
            }
        }))
        .await?;
        assert_eq!(finished.into_inner(), ["c", "b", "a"]);
        assert_eq!(answers, ["a answered", "b answered", "c answered"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_change_stops_after_the_batch_with_a_failure_and_skips_the_rest() -> TestResult {
        let hosts = hosts(&["a", "b", "c", "d", "e"])?;
        let (done, ran) = (Cell::new(0), RefCell::new(Vec::new()));
        let parts = bounded(in_batches(
            &hosts,
            2,
            |h| {
                let (done, ran) = (&done, &ran);
                async move {
                    ran.borrow_mut().push(h.name.clone());
                    // a waits for b: the hosts of a batch change at once.
                    wait_for_turn(done, usize::from(h.name == "a")).await;
                    done.set(done.get() + 1);
                    h.name != "b"
                }
            },
            |ok| !ok,
        ))
        .await?;
        assert_eq!(ran.into_inner(), ["a", "b"]);
        assert_eq!(
            parts,
            [
                Part::Ran(true),
                Part::Ran(false),
                Part::Skipped,
                Part::Skipped,
                Part::Skipped
            ]
        );
        Ok(())
    }

    #[tokio::test]
    async fn one_at_a_time_the_watcher_sees_each_host_begin_and_end() -> TestResult {
        let hosts = hosts(&["a", "b", "c"])?;
        let mut seen = Vec::new();
        let parts = in_batches_watched(
            &hosts,
            0,
            |h| async move { h.name != "b" },
            |ok| !ok,
            |turn| {
                seen.push(match turn {
                    Turn::Begins(h) => format!("begins {}", h.name),
                    Turn::Ends(h, Part::Ran(ok)) => format!("ends {} ok={ok}", h.name),
                    Turn::Ends(h, Part::Skipped) => format!("skips {}", h.name),
                });
                Ok::<(), std::io::Error>(())
            },
        )
        .await?;
        assert_eq!(
            seen,
            [
                "begins a",
                "ends a ok=true",
                "begins b",
                "ends b ok=false",
                "skips c"
            ]
        );
        assert_eq!(parts.len(), 3);
        Ok(())
    }

    #[tokio::test]
    async fn a_watcher_error_stops_the_change_where_it_is() -> TestResult {
        let hosts = hosts(&["a", "b"])?;
        let ran = RefCell::new(Vec::new());
        let result = in_batches_watched(
            &hosts,
            1,
            |h| {
                ran.borrow_mut().push(h.name.clone());
                async {}
            },
            |_: &()| false,
            |turn| match turn {
                Turn::Ends(..) => Err("stdout is closed"),
                Turn::Begins(_) => Ok(()),
            },
        )
        .await;
        assert_eq!(result, Err("stdout is closed"));
        assert_eq!(ran.into_inner(), ["a"]);
        Ok(())
    }
}
