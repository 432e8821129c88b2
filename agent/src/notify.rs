//! systemd's notify protocol (Type=notify): READY once serving, STOPPING on
//! shutdown, WATCHDOG while the runtime is alive. Outside systemd
//! (NOTIFY_SOCKET unset) these are no-ops.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// Pings the watchdog at half its period, when systemd asked for one.
/// The ping comes from a task on the same runtime as everything else, so a
/// wedged runtime stops the pings and systemd restarts hostd.
pub fn spawn_watchdog(lifetime: &crate::lifetime::Lifetime) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (period / 2).max(Duration::from_millis(100));
    tracing::info!(period_ms = period.as_millis() as u64, "watchdog enabled");
    let ending = lifetime.clone();
    lifetime.spawn("watchdog", async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticker.tick() => send(&[NotifyState::Watchdog]),
                () = ending.ending() => return,
            }
        }
    });
}
