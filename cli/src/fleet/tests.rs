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
