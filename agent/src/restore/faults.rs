//! Debug builds only: the integration suite pauses or fails a restore at a
//! named point, to kill hostd exactly there or to make a swap fail. Root
//! writes `pause POINT` or `fail POINT` to /run/hostd/restore-fault; a
//! paused hostd names its point in /run/hostd/restore-paused. A release
//! build compiles this to nothing.

#[derive(Debug, thiserror::Error)]
#[error("failure injected at `{0}` (a debug build's /run/hostd/restore-fault)")]
pub struct Injected(pub String);

#[cfg(not(debug_assertions))]
pub async fn at(_point: &str) -> Result<(), Injected> {
    Ok(())
}

#[cfg(debug_assertions)]
pub async fn at(point: &str) -> Result<(), Injected> {
    const FAULT: &str = "/run/hostd/restore-fault";
    const PAUSED: &str = "/run/hostd/restore-paused";
    let wanted = |action: &str| {
        std::fs::read_to_string(FAULT).is_ok_and(|s| s.trim() == format!("{action} {point}"))
    };
    if wanted("fail") {
        return Err(Injected(point.to_owned()));
    }
    if !wanted("pause") {
        return Ok(());
    }
    tracing::warn!(point, "restore paused by {FAULT}");
    let _ = std::fs::write(PAUSED, point);
    // Bounded: a forgotten fault file must not hold a restore for good.
    for _ in 0..6000 {
        if !wanted("pause") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_file(PAUSED);
    Ok(())
}
