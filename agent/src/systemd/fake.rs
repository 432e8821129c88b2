//! A hand-written systemd for unit tests: units that start, stop, restart
//! and fail as told, with change signals, and a record of every job.
//! Not a mock: no expectations, just a small model of systemd's behaviour
//! that the tests read back (see the project's notes on fakes over mocks).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use hostd_api::ActiveState;
use tokio::sync::broadcast;

use super::{
    ExecContext, JobError, JobKind, ServiceOutcome, SystemdError, UnitState, UnitStates, Units,
};
use crate::config::UnitName;

#[derive(Debug, Clone)]
struct Unit {
    active: ActiveState,
    sub: &'static str,
    outcome: ServiceOutcome,
}

#[derive(Default)]
struct State {
    units: BTreeMap<String, Unit>,
    /// Starts (and restarts) of a unit still to fail.
    failing_starts: BTreeMap<String, usize>,
    /// Stops of a unit still to be refused.
    failing_stops: BTreeMap<String, usize>,
    jobs: Vec<String>,
}

#[derive(Clone)]
pub struct FakeSystemd {
    state: Arc<Mutex<State>>,
    changes: broadcast::Sender<String>,
}

impl Default for FakeSystemd {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            changes: broadcast::channel(256).0,
        }
    }
}

impl FakeSystemd {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn set(&self, unit: &str, active: ActiveState, sub: &'static str, outcome: ServiceOutcome) {
        self.with(|s| {
            s.units.insert(
                unit.to_owned(),
                Unit {
                    active,
                    sub,
                    outcome,
                },
            )
        });
        let _ = self.changes.send(unit.to_owned());
    }

    /// The next `n` starts or restarts of `unit` fail.
    pub fn fail_starts(&self, unit: &str, n: usize) {
        self.with(|s| s.failing_starts.insert(unit.to_owned(), n));
    }

    /// The next `n` stops of `unit` are refused (as for a unit that is
    /// not installed).
    pub fn fail_stops(&self, unit: &str, n: usize) {
        self.with(|s| s.failing_stops.insert(unit.to_owned(), n));
    }

    /// `unit`'s main process dies by itself (a crash), as systemd reports it.
    pub fn crash(&self, unit: &str, exit_status: i32) {
        self.set(
            unit,
            ActiveState::Failed,
            "failed",
            ServiceOutcome {
                result: "exit-code".into(),
                exit_status: Some(exit_status),
            },
        );
    }

    pub fn active_state(&self, unit: &str) -> ActiveState {
        self.with(|s| {
            s.units
                .get(unit)
                .map_or(ActiveState::Inactive, |u| u.active)
        })
    }

    /// Every job so far, as `start api@1.service`.
    pub fn jobs(&self) -> Vec<String> {
        self.with(|s| s.jobs.clone())
    }

    pub fn clear_jobs(&self) {
        self.with(|s| s.jobs.clear());
    }
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
        }
        None => pattern == name,
    }
}

impl UnitStates for FakeSystemd {
    async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, SystemdError> {
        let u = self.with(|s| s.units.get(unit.as_str()).cloned());
        Ok(UnitState {
            load_state: "loaded".into(),
            active_state: u.as_ref().map_or(ActiveState::Inactive, |u| u.active),
            sub_state: u.map_or("dead", |u| u.sub).into(),
        })
    }
}

impl Units for FakeSystemd {
    async fn job(
        &self,
        kind: JobKind,
        unit: &UnitName,
        _timeout: std::time::Duration,
    ) -> Result<(), JobError> {
        let name = unit.as_str();
        let word = match kind {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
        };
        self.with(|s| s.jobs.push(format!("{word} {name}")));
        if kind == JobKind::Stop {
            let refused = self.with(|s| match s.failing_stops.get_mut(name) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            });
            if refused {
                return Err(JobError::Failed {
                    kind: word,
                    unit: name.to_owned(),
                    result: "failed".into(),
                    journal: format!("journal of {name}"),
                });
            }
            self.set(
                name,
                ActiveState::Inactive,
                "dead",
                ServiceOutcome::default(),
            );
            return Ok(());
        }
        let fails = self.with(|s| match s.failing_starts.get_mut(name) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        });
        if fails {
            self.crash(name, 1);
            return Err(JobError::Failed {
                kind: word,
                unit: name.to_owned(),
                result: "failed".into(),
                journal: format!("journal of {name}"),
            });
        }
        self.set(
            name,
            ActiveState::Active,
            "running",
            ServiceOutcome::default(),
        );
        Ok(())
    }

    async fn reset_failed(&self, unit: &UnitName) -> Result<(), SystemdError> {
        self.with(|s| {
            if let Some(u) = s.units.get_mut(unit.as_str())
                && u.active == ActiveState::Failed
            {
                u.active = ActiveState::Inactive;
                u.sub = "dead";
            }
        });
        Ok(())
    }

    async fn units_matching(&self, pattern: &str) -> Result<Vec<String>, SystemdError> {
        Ok(self.with(|s| {
            s.units
                .keys()
                .filter(|name| glob(pattern, name))
                .cloned()
                .collect()
        }))
    }

    async fn service_outcome(&self, unit: &UnitName) -> Result<ServiceOutcome, SystemdError> {
        Ok(self.with(|s| {
            s.units
                .get(unit.as_str())
                .map(|u| u.outcome.clone())
                .unwrap_or_default()
        }))
    }

    async fn exec_context(&self, _unit: &UnitName) -> Result<ExecContext, SystemdError> {
        Ok(ExecContext {
            user: "api".into(),
            group: "api".into(),
            ..ExecContext::default()
        })
    }

    async fn subscribe(&self) -> Result<(), SystemdError> {
        Ok(())
    }

    async fn watch_unit(
        &self,
        unit: &UnitName,
    ) -> Result<BoxStream<'static, UnitName>, SystemdError> {
        let rx = self.changes.subscribe();
        let unit = unit.clone();
        Ok(futures_util::stream::unfold(rx, move |mut rx| {
            let unit = unit.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(name) if name == unit.as_str() => return Some((unit, rx)),
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed())
    }

    async fn reload(&self) -> Result<(), SystemdError> {
        self.with(|s| s.jobs.push("daemon-reload".into()));
        Ok(())
    }

    async fn journal_tail(&self, unit: &UnitName) -> String {
        format!("journal of {unit}")
    }
}
