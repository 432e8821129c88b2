//! Processes we started, identified by PID *and* start time (so a recycled
//! PID is never signalled), and stopped with a deadline. Nothing reaps here
//! (PID 1 is not an init), so a zombie counts as exited.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// A process we started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Proc {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat (clock ticks after boot).
    pub start_time: u64,
}

/// Parsed fields of /proc/PID/stat that we need.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub state: char,
    pub ppid: i32,
    pub start_time: u64,
}

/// Parse /proc/PID/stat. The command name may contain spaces and parens, so
/// split after the *last* ')'.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field N is at index N - 3.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

pub(crate) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

impl Proc {
    /// Identify a process that was just started.
    pub(crate) fn of(pid: i32) -> Option<Proc> {
        Some(Proc {
            pid,
            start_time: stat(pid)?.start_time,
        })
    }

    /// Still the same process, and not a zombie.
    pub(crate) fn is_alive(&self) -> bool {
        matches!(stat(self.pid), Some(s) if s.start_time == self.start_time && !matches!(s.state, 'Z' | 'X'))
    }

    /// For an nspawn process: the container's init, its one live child.
    pub(crate) fn container_init(&self) -> Option<Proc> {
        if !self.is_alive() {
            return None;
        }
        self.children().into_iter().next()
    }

    /// Direct children that are alive (for nspawn: the container's init).
    fn children(&self) -> Vec<Proc> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| {
                let s = stat(pid)?;
                (s.ppid == self.pid && !matches!(s.state, 'Z' | 'X')).then_some(Proc {
                    pid,
                    start_time: s.start_time,
                })
            })
            .collect()
    }

    fn signal(&self, sig: Signal) {
        if self.is_alive()
            && let Err(e) = kill(Pid::from_raw(self.pid), sig)
        {
            warn!(pid = self.pid, "kill {sig}: {e}");
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL the process and its direct
    /// children (killing a container's init kills its whole PID namespace;
    /// otherwise it would outlive a SIGKILLed nspawn).
    pub(crate) async fn terminate(&self, what: &str, grace: Duration) {
        if !self.is_alive() {
            return;
        }
        info!(pid = self.pid, "stopping {what}");
        self.signal(Signal::SIGTERM);
        if wait_until_dead(&[*self], grace).await {
            return;
        }
        warn!(
            pid = self.pid,
            "{what} did not stop within {grace:?}; killing it"
        );
        let mut victims = self.children();
        for c in &victims {
            c.signal(Signal::SIGKILL);
        }
        self.signal(Signal::SIGKILL);
        victims.push(*self);
        if !wait_until_dead(&victims, Duration::from_secs(10)).await {
            warn!(pid = self.pid, "{what} survived SIGKILL");
        }
    }
}

/// Poll until none of `procs` is alive or the deadline passes.
async fn wait_until_dead(procs: &[Proc], limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if procs.iter().all(|p| !p.is_alive()) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line =
            "4242 (a (b) c) Z 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'Z',
                ppid: 17,
                start_time: 123456
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive() {
        let me = Proc::of(std::process::id() as i32);
        assert!(me.is_some_and(|p| p.is_alive()));
        let wrong = me.map(|p| Proc {
            start_time: p.start_time + 1,
            ..p
        });
        assert!(wrong.is_some_and(|p| !p.is_alive()));
    }
}
