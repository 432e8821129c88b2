use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::*;

/// An operation that runs until `release` fires, noting its name in
/// `log` when it starts and what it was told when it never ran.
fn op(
    name: &str,
    wait: Duration,
    log: &Arc<Mutex<Vec<String>>>,
) -> (Operation, oneshot::Sender<()>) {
    let (release, released) = oneshot::channel::<()>();
    let (started, waited, never) = (Arc::clone(log), Arc::clone(log), Arc::clone(log));
    let name = name.to_owned();
    let (n1, n2, n3) = (name.clone(), name.clone(), name.clone());
    let op = Operation::new(Holder::new(name, "ann@laptop"), wait, async move {
        started
            .lock()
            .map(|mut l| l.push(format!("start {n1}")))
            .ok();
        let _ = released.await;
    })
    .on_waiting(move |h| {
        waited
            .lock()
            .map(|mut l| l.push(format!("{n2} waits for {}", h.operation)))
            .ok();
    })
    .on_never_run(move |e| {
        never.lock().map(|mut l| l.push(format!("{n3}: {e}"))).ok();
    });
    (op, release)
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn lines(log: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

#[tokio::test]
async fn one_at_a_time_in_order_and_a_busy_host_refuses_who_will_not_wait() {
    let lifetime = Lifetime::new();
    let ops = spawn(&lifetime);
    let log = Arc::new(Mutex::new(Vec::new()));
    let (first, release_first) = op("deploy api v2", Duration::ZERO, &log);
    let (second, release_second) = op("restore latest", Duration::from_secs(60), &log);
    let (third, _) = op("task migrate", Duration::ZERO, &log);
    assert!(ops.submit(first).await.is_ok());
    assert!(ops.submit(second).await.is_ok());
    let refused = ops.submit(third).await;
    assert!(
        matches!(&refused, Err(OpsError::Held(h)) if h.operation == "deploy api v2"),
        "{refused:?}"
    );
    assert_eq!(
        ops.holder().map(|h| h.operation).as_deref(),
        Some("deploy api v2")
    );
    let _ = release_first.send(());
    until("the second runs", || {
        lines(&log).contains(&"start restore latest".to_owned())
    })
    .await;
    assert_eq!(
        lines(&log),
        [
            "start deploy api v2",
            "restore latest waits for deploy api v2",
            "start restore latest"
        ]
    );
    let _ = release_second.send(());
    until("the host is free", || ops.holder().is_none()).await;
    assert!(lifetime.finish(Duration::from_secs(5)).await.is_empty());
}

#[tokio::test]
async fn a_wait_is_bounded_and_names_the_holder() {
    let lifetime = Lifetime::new();
    let ops = spawn(&lifetime);
    let log = Arc::new(Mutex::new(Vec::new()));
    let (first, _release) = op("restore latest", Duration::ZERO, &log);
    let (second, _) = op("deploy api v3", Duration::from_millis(50), &log);
    assert!(ops.submit(first).await.is_ok());
    assert!(ops.submit(second).await.is_ok());
    until("the wait runs out", || lines(&log).len() == 3).await;
    let last = lines(&log).pop().unwrap_or_default();
    assert!(
        last.starts_with("deploy api v3: the host's operations lock is still held after waiting 0s: `restore latest` by ann@laptop"),
        "{last}"
    );
    assert_eq!(
        ops.holder().map(|h| h.operation).as_deref(),
        Some("restore latest")
    );
}

#[tokio::test]
async fn at_shutdown_waiting_operations_never_run_and_the_running_one_is_joined() {
    let lifetime = Lifetime::new();
    let ops = spawn(&lifetime);
    let log = Arc::new(Mutex::new(Vec::new()));
    let stopping = lifetime.clone();
    let finished = Arc::clone(&log);
    let running = Operation::new(Holder::new("deploy", ""), Duration::ZERO, async move {
        stopping.ending().await;
        finished
            .lock()
            .map(|mut l| l.push("deploy wound down".into()))
            .ok();
    });
    let (queued, _) = op("restore", Duration::from_secs(60), &log);
    assert!(ops.submit(running).await.is_ok());
    assert!(ops.submit(queued).await.is_ok());
    assert!(lifetime.finish(Duration::from_secs(5)).await.is_empty());
    let l = lines(&log);
    assert!(l.contains(&"deploy wound down".to_owned()), "{l:?}");
    assert!(
        l.contains(&"restore: hostd is shutting down; the operation did not run".to_owned()),
        "{l:?}"
    );
    assert!(matches!(
        ops.submit(op("late", Duration::ZERO, &log).0).await,
        Err(OpsError::Gone)
    ));
}

#[tokio::test]
async fn recovery_notes_are_kept_until_acknowledged_on_a_free_host() {
    let lifetime = Lifetime::new();
    let ops = spawn(&lifetime);
    ops.recovered("returned api to v1".into()).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (busy, release) = op("deploy", Duration::ZERO, &log);
    assert!(ops.submit(busy).await.is_ok());
    assert!(matches!(ops.acknowledge().await, Err(h) if h.operation == "deploy"));
    let _ = release.send(());
    until("the host is free", || ops.holder().is_none()).await;
    let before = ops.acknowledge().await;
    assert!(
        matches!(&before, Ok(v) if v.recovered == ["returned api to v1"]),
        "{before:?}"
    );
    assert!(ops.view().borrow().recovered.is_empty());
}

#[tokio::test]
async fn a_wait_past_the_clocks_range_does_not_panic() {
    let lifetime = Lifetime::new();
    let ops = spawn(&lifetime);
    let log = Arc::new(Mutex::new(Vec::new()));
    let (first, release) = op("restore", Duration::ZERO, &log);
    let (second, _) = op("deploy", Duration::MAX, &log);
    assert!(ops.submit(first).await.is_ok());
    assert!(ops.submit(second).await.is_ok());
    let _ = release.send(());
    until("the second runs", || {
        lines(&log).contains(&"start deploy".to_owned())
    })
    .await;
}
