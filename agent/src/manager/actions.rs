//! What the manager does: bring units to the desired state, act on
//! hostctl's requests, and restart failed units by their policy.

use std::sync::Arc;

use hostd_api::time::now_rfc3339;
use hostd_api::{ActionResult, ActiveState, ServiceAction, UnitEvent, UnitStatus};
use tokio::time::Instant;

use super::backoff::Decision;
use super::{Gate, JOB_TIMEOUT, Manager, ManagerError, Progress, probe};
use crate::checks::InstanceAddress;
use crate::config::{Config, RestartMode, ServiceConfig, UnitName};
use crate::desired::{DesiredState, WantedUnit};
use crate::systemd::JobKind;
use crate::systemd::Units;

/// How long a started app must keep running before it counts as up.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

const RECONCILE_FIRST_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
const RECONCILE_MAX_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

impl<U: Units> Manager<U> {
    pub(super) fn service(&self, name: &str) -> Result<&ServiceConfig, ManagerError> {
        self.config
            .services
            .get(name)
            .ok_or_else(|| ManagerError::UnknownService {
                name: name.to_owned(),
                known: self.config.services.keys().cloned().collect(),
            })
    }

    pub(super) fn wanted_of(&self, service: &str) -> Vec<WantedUnit> {
        self.wanted()
            .into_iter()
            .filter(|w| w.service == service)
            .collect()
    }

    /// Brings `services` to the desired state. Run at start: after a reboot
    /// or a hostd restart this is what restores `hostctl scale`/`stop`. A
    /// service that cannot get there yet (PostgreSQL still starting at
    /// boot) is retried with backoff; one broken service never keeps hostd
    /// from managing the others.
    pub(super) async fn reconcile(&mut self, services: Vec<String>) {
        for name in services {
            let running = self.desired.services.get(&name).is_some_and(|d| d.running);
            let result = if running {
                self.bring_up(&name, None).await.map(|_| ())
            } else {
                self.bring_down(&name).await
            };
            match result {
                Ok(()) => {
                    if self.unreconciled.remove(&name) {
                        tracing::info!(service = name, "now in its desired state");
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        service = name,
                        "not yet in its desired state, will retry: {e}"
                    );
                    self.unreconciled.insert(name);
                }
            }
        }
        self.reconcile_retry = if self.unreconciled.is_empty() {
            // Operators (and the test suite) wait for this line: until then
            // hostd may still start what it finds stopped.
            tracing::info!("every service is in its desired state");
            None
        } else {
            // 1 s, doubling to 30 s: quick while services boot, quiet after.
            let delay = self
                .reconcile_retry
                .map_or(RECONCILE_FIRST_RETRY, |(_, d)| {
                    (d * 2).min(RECONCILE_MAX_RETRY)
                });
            Some((Instant::now() + delay, delay))
        };
        self.publish();
    }

    pub(super) async fn retry_reconcile(&mut self) {
        if self
            .reconcile_retry
            .is_some_and(|(at, _)| at <= Instant::now())
        {
            let pending: Vec<String> = self.unreconciled.iter().cloned().collect();
            self.reconcile(pending).await;
        }
    }

    /// Starts the socket and every wanted unit that is not running, and
    /// stops instances beyond the desired count. With a `gate`, each
    /// instance it starts must pass it. Returns the units it started.
    async fn bring_up(
        &mut self,
        service: &str,
        gate: Option<&Gate>,
    ) -> Result<Vec<UnitName>, ManagerError> {
        let svc = self.service(service)?.clone();
        if svc.awaits_first_release() {
            // Nothing of it runs: what a failed first release started goes.
            tracing::info!(service, "not deployed yet: starts with its first release");
            self.stop_loaded(service).await?;
            return Ok(Vec::new());
        }
        // Before anything of it starts, the socket included: a connection
        // to an open socket would start an instance without its secrets.
        crate::secrets::gate(&self.config, &self.secrets.borrow(), service)?;
        if let Some(db) = &svc.database {
            let conninfo = self.config.postgres_admin();
            let password = self.secrets.borrow().wired.postgres_password.clone();
            crate::postgres::ensure_app_database(conninfo, db, password.as_ref()).await?;
        }
        if let Some(socket) = &svc.socket {
            self.units.job(JobKind::Start, socket, JOB_TIMEOUT).await?;
        }
        let mut started = Vec::new();
        for w in self.wanted_of(service) {
            self.watch(&w.unit).await;
            let state = self.units.unit_state(&w.unit).await?;
            if matches!(
                state.active_state,
                ActiveState::Active | ActiveState::Reloading
            ) {
                continue;
            }
            self.start_gated(&svc, &w, gate).await?;
            started.push(w.unit);
        }
        if self.behind_front(service) {
            self.route_wanted(service).await?;
        }
        self.stop_extra_instances(service).await?;
        Ok(started)
    }

    async fn bring_down(&mut self, service: &str) -> Result<(), ManagerError> {
        let svc = self.service(service)?.clone();
        // The socket first: left open, a connection would start an instance
        // (its Service=) right after we stopped it.
        if let Some(socket) = &svc.socket {
            self.units.job(JobKind::Stop, socket, JOB_TIMEOUT).await?;
        }
        if self.behind_front(service) {
            // Out of the front first: it answers 503 rather than meeting a
            // closed port.
            self.routing.route(service, &[]).await?;
            let loaded = self.loaded_units(service).await?;
            return self.drain_and_stop(service, &loaded).await;
        }
        self.stop_loaded(service).await
    }

    async fn stop_loaded(&mut self, service: &str) -> Result<(), ManagerError> {
        for unit in self.loaded_units(service).await? {
            self.scheduled.remove(&unit);
            self.units.job(JobKind::Stop, &unit, JOB_TIMEOUT).await?;
        }
        Ok(())
    }

    /// The units of a service systemd has loaded: the unit, or every loaded
    /// instance of a template (including ones no longer wanted).
    async fn loaded_units(&self, service: &str) -> Result<Vec<UnitName>, ManagerError> {
        let svc = self.service(service)?;
        if !svc.unit.is_template() {
            return Ok(vec![svc.unit.clone()]);
        }
        let pattern = svc.unit.as_str().replacen("@.", "@*.", 1);
        Ok(self
            .units
            .units_matching(&pattern)
            .await?
            .into_iter()
            .filter_map(|u| {
                let n = svc.unit.instance_of(&u)?;
                svc.unit.instance(n)
            })
            .collect())
    }

    async fn stop_extra_instances(&mut self, service: &str) -> Result<(), ManagerError> {
        let wanted: Vec<UnitName> = self
            .wanted_of(service)
            .into_iter()
            .map(|w| w.unit)
            .collect();
        let mut extra = Vec::new();
        for unit in self.loaded_units(service).await? {
            if !wanted.contains(&unit) {
                let state = self.units.unit_state(&unit).await?;
                if state.active_state != ActiveState::Inactive {
                    tracing::info!(%unit, "stopping an instance beyond the desired count");
                    extra.push(unit);
                }
            }
        }
        if self.behind_front(service) && !extra.is_empty() {
            self.route_wanted(service).await?;
            return self.drain_and_stop(service, &extra).await;
        }
        for unit in extra {
            self.scheduled.remove(&unit);
            self.units.job(JobKind::Stop, &unit, JOB_TIMEOUT).await?;
        }
        Ok(())
    }

    /// Polls the unit and its health socket until healthy, failed or late.
    pub(super) async fn wait_healthy(
        &self,
        svc: &ServiceConfig,
        w: &WantedUnit,
        gate: &Gate,
    ) -> Result<(), ManagerError> {
        // Gate timeouts are bounded where requests and hostd.toml are read.
        let deadline = Instant::now()
            .checked_add(gate.timeout)
            .unwrap_or_else(Instant::now);
        let socket = match (svc.port, w.instance) {
            (Some(_), _) | (None, Some(_)) => InstanceAddress::of(svc, w.instance),
            (None, None) => None,
        };
        let mut last;
        loop {
            let state = self.units.unit_state(&w.unit).await?;
            match state.active_state {
                ActiveState::Failed | ActiveState::Inactive => {
                    last = format!(
                        "the unit is {} ({})",
                        state.active_state.as_str(),
                        state.sub_state
                    );
                    if let Ok(outcome) = self.units.service_outcome(&w.unit).await {
                        last = format!("{last}: {}", outcome.explain());
                    }
                    break;
                }
                ActiveState::Active => {
                    let asked = match &socket {
                        None => Ok(()),
                        Some(address) => self.gate.ask(address, &gate.path).await,
                    };
                    match asked {
                        Ok(()) if !svc.is_app() => return Ok(()),
                        Ok(()) => match self.settled(&w.unit).await? {
                            None => return Ok(()),
                            Some(why) => {
                                last = why;
                                break;
                            }
                        },
                        Err(e) => last = hostd_api::error_chain(&e),
                    }
                }
                other => last = format!("the unit is {}", other.as_str()),
            }
            if Instant::now() >= deadline {
                last = format!("{last} after {}s", gate.timeout.as_secs());
                break;
            }
            tokio::time::sleep(probe::POLL).await;
        }
        Err(ManagerError::Unhealthy {
            unit: w.unit.to_string(),
            reason: last,
            journal: self.units.journal_tail(&w.unit).await,
        })
    }

    /// An app that answered (or a worker that started) must still run a
    /// moment later: a runtime killed at start (SIGSYS from the system call
    /// filter) or a worker that exits at once is not a healthy instance.
    /// Some(why) when it did not stay up.
    async fn settled(&self, unit: &UnitName) -> Result<Option<String>, ManagerError> {
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            tokio::time::sleep(probe::POLL).await;
            let state = self.units.unit_state(unit).await?;
            if state.active_state != ActiveState::Active {
                let outcome = self.units.service_outcome(unit).await.ok();
                return Ok(Some(match outcome {
                    Some(o) => o.explain(),
                    None => format!(
                        "the unit is {} ({}) right after starting",
                        state.active_state.as_str(),
                        state.sub_state
                    ),
                }));
            }
        }
        Ok(None)
    }

    pub(super) async fn action(
        &mut self,
        service: &str,
        action: ServiceAction,
    ) -> Result<ActionResult, ManagerError> {
        let started = Instant::now();
        let svc = self.service(service)?.clone();
        let running = !matches!(action, ServiceAction::Stop);
        if running && svc.awaits_first_release() {
            return Err(ManagerError::NotDeployed {
                service: service.to_owned(),
            });
        }
        let before = self.desired.services.get(service).map(|d| d.running);
        self.set_running(service, running)?;
        let gate = Gate::of(&svc);
        let acted = match action {
            ServiceAction::Start => self.bring_up(service, Some(&gate)).await.map(drop),
            ServiceAction::Stop => self.bring_down(service).await,
            ServiceAction::Restart => self.restart_each(service, &gate, None).await,
        };
        if let Err(e) = acted {
            // A stop that did not happen is not recorded as one: hostd
            // would otherwise stop minding a service that still runs.
            if action == ServiceAction::Stop
                && let Some(was) = before
            {
                self.set_running(service, was)?;
            }
            return Err(e);
        }
        self.result(service, started).await
    }

    fn set_running(&mut self, service: &str, running: bool) -> Result<(), ManagerError> {
        if let Some(d) = self.desired.services.get_mut(service) {
            d.running = running;
        }
        self.store.save(&self.desired)?;
        self.publish();
        Ok(())
    }

    /// A restart of every instance for a new release. The service runs
    /// afterwards even if it was stopped: a deploy means "serve this".
    pub(super) async fn rollout(
        &mut self,
        service: &str,
        gate: &Gate,
        progress: &Progress,
    ) -> Result<ActionResult, ManagerError> {
        let started = Instant::now();
        self.service(service)?;
        if let Some(d) = self.desired.services.get_mut(service) {
            d.running = true;
        }
        self.store.save(&self.desired)?;
        self.publish();
        self.restart_each(service, gate, Some(progress)).await?;
        self.result(service, started).await
    }

    /// Starts what is missing, then restarts the rest one at a time, each
    /// passing `gate` before the next: the others keep serving.
    async fn restart_each(
        &mut self,
        service: &str,
        gate: &Gate,
        progress: Option<&Progress>,
    ) -> Result<(), ManagerError> {
        let svc = self.service(service)?.clone();
        let fresh = self.bring_up(service, Some(gate)).await?;
        if svc.awaits_first_release() {
            return Ok(());
        }
        if self.behind_front(service) {
            // Instances all just started (a first release) already run it.
            if fresh.len() == self.wanted_of(service).len() {
                return Ok(());
            }
            return self.blue_green(service, gate, progress).await;
        }
        for w in self.wanted_of(service) {
            if fresh.contains(&w.unit) {
                continue;
            }
            let step = format!("restart {}", w.unit);
            let began = super::step_begins(progress, &step);
            self.scheduled.remove(&w.unit);
            self.histories.remove(&w.unit);
            self.units
                .job(JobKind::Restart, &w.unit, JOB_TIMEOUT)
                .await?;
            self.wait_healthy(&svc, &w, gate).await?;
            super::step_done(progress, step, began);
        }
        Ok(())
    }

    pub(super) async fn reconfigure(
        &mut self,
        config: Arc<Config>,
        restart: &[String],
        scale: &[String],
        progress: &Progress,
    ) -> Result<(), ManagerError> {
        let declared = |c: &Config, s: &str| c.services.get(s).and_then(|svc| svc.instances);
        let recounted: Vec<(String, u32)> = config
            .services
            .keys()
            .filter(|s| declared(&self.config, s) != declared(&config, s))
            .filter_map(|s| Some((s.clone(), declared(&config, s)?.0)))
            .collect();
        self.config = config;
        self.desired = DesiredState::reconcile_with(&self.config, Some(&self.desired));
        // The repository's count wins over an earlier `hostctl scale` when
        // the declaration itself changed.
        for (service, n) in recounted {
            if let Some(d) = self.desired.services.get_mut(&service)
                && d.instances.is_some()
            {
                d.instances = Some(n);
            }
        }
        self.store.save(&self.desired)?;
        let config = Arc::clone(&self.config);
        let gone = |unit: &UnitName| config.service_of_unit(unit.as_str()).is_none();
        self.scheduled.retain(|unit, _| !gone(unit));
        self.histories.retain(|unit, _| !gone(unit));
        self.unreconciled
            .retain(|s| config.services.contains_key(s));
        self.restarts.retain(|s, _| config.services.contains_key(s));
        self.failures.retain(|s, _| config.services.contains_key(s));
        self.publish();
        let restarts = restart.iter().map(|s| (s, false));
        for (service, count_only) in restarts.chain(scale.iter().map(|s| (s, true))) {
            let Some(svc) = config.services.get(service) else {
                continue;
            };
            if !self
                .desired
                .services
                .get(service)
                .is_some_and(|d| d.running)
            {
                continue;
            }
            let gate = Gate::of(svc);
            let verb = if count_only { "scale" } else { "bring up" };
            let step = format!("{verb} {service}");
            let began = super::step_begins(Some(progress), &step);
            if count_only {
                self.bring_up(service, Some(&gate)).await?;
            } else {
                self.restart_each(service, &gate, Some(progress)).await?;
            }
            super::step_done(Some(progress), step, began);
        }
        Ok(())
    }

    pub(super) async fn scale(
        &mut self,
        service: &str,
        instances: u32,
    ) -> Result<ActionResult, ManagerError> {
        let started = Instant::now();
        let svc = self.service(service)?.clone();
        if !svc.unit.is_template() {
            return Err(ManagerError::NotInstanced {
                service: service.to_owned(),
            });
        }
        if !(1..=svc.max_instances.0).contains(&instances) {
            return Err(ManagerError::OutOfRange {
                service: service.to_owned(),
                requested: instances,
                max: svc.max_instances.0,
            });
        }
        let Some(before) = self.desired.services.get(service).cloned() else {
            return Err(ManagerError::UnknownService {
                name: service.to_owned(),
                known: self.config.services.keys().cloned().collect(),
            });
        };
        self.set_instances(service, instances, true)?;
        if let Err(e) = self.bring_up(service, Some(&Gate::of(&svc))).await {
            // A scale that cannot be healthy changes nothing: back to the
            // previous count, and the new instances go away again.
            tracing::warn!(
                service,
                "scale failed, returning to {:?} instances: {e}",
                before.instances
            );
            self.set_instances(service, before.instances.unwrap_or(1), before.running)?;
            if let Err(undo) = self.stop_extra_instances(service).await {
                tracing::error!(
                    service,
                    "cannot stop the instances of the failed scale: {undo}"
                );
            }
            return Err(e);
        }
        self.result(service, started).await
    }

    fn set_instances(&mut self, service: &str, n: u32, running: bool) -> Result<(), ManagerError> {
        if let Some(d) = self.desired.services.get_mut(service) {
            d.instances = Some(n);
            d.running = running;
        }
        self.store.save(&self.desired)?;
        self.publish();
        Ok(())
    }

    /// The answer to a successful action or scale, which also means the
    /// service is where it should be.
    async fn result(
        &mut self,
        service: &str,
        started: Instant,
    ) -> Result<ActionResult, ManagerError> {
        self.unreconciled.remove(service);
        let mut units = Vec::new();
        let mut names: Vec<(UnitName, Option<u32>)> = self
            .wanted_of(service)
            .into_iter()
            .map(|w| (w.unit, w.instance))
            .collect();
        if let Some(socket) = &self.service(service)?.socket {
            names.push((socket.clone(), None));
        }
        for (unit, instance) in names {
            let st = self.units.unit_state(&unit).await?;
            units.push(UnitStatus {
                service: service.to_owned(),
                unit: unit.to_string(),
                instance,
                active_state: st.active_state,
                sub_state: st.sub_state,
            });
        }
        Ok(ActionResult {
            service: service.to_owned(),
            units,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// A watched unit changed. A wanted unit that failed gets an event and,
    /// by its policy, a restart after its backoff.
    pub(super) async fn on_change(&mut self, unit: UnitName) {
        self.poke();
        let Some(w) = self.wanted().into_iter().find(|w| w.unit == unit) else {
            return;
        };
        if !w.running || self.scheduled.contains_key(&unit) {
            return;
        }
        match self.units.unit_state(&unit).await {
            Ok(st) if st.active_state == ActiveState::Failed => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%unit, "cannot read state after a change: {e}");
                return;
            }
        }
        let outcome = self.units.service_outcome(&unit).await.ok();
        let Some(policy) = self
            .config
            .services
            .get(&w.service)
            .map(|s| s.restart.clone())
        else {
            return;
        };
        let action = match policy.policy {
            RestartMode::Never => "failed; not restarted (restart.policy = never)".to_owned(),
            RestartMode::OnFailure => {
                let history = self.histories.entry(unit.clone()).or_default();
                match history.on_failure(&policy, std::time::Instant::now()) {
                    Decision::RestartIn(delay) => {
                        self.scheduled.insert(unit.clone(), Instant::now() + delay);
                        format!(
                            "failed; restarting in {}",
                            humantime::format_duration(delay)
                        )
                    }
                    Decision::GiveUp { failures } => format!(
                        "failed {failures} times within {}; gave up restarting it",
                        humantime::format_duration(policy.window.0)
                    ),
                }
            }
        };
        self.record(UnitEvent {
            time: now_rfc3339(),
            service: w.service,
            unit: unit.to_string(),
            result: outcome
                .as_ref()
                .map_or_else(|| "unknown".into(), |o| o.result.clone()),
            exit_status: outcome.and_then(|o| o.exit_status),
            action,
        });
    }

    pub(super) async fn run_due_restarts(&mut self) {
        let now = Instant::now();
        let due: Vec<UnitName> = self
            .scheduled
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(u, _)| u.clone())
            .collect();
        for unit in due {
            self.scheduled.remove(&unit);
            let Some(w) = self
                .wanted()
                .into_iter()
                .find(|w| w.unit == unit && w.running)
            else {
                continue;
            };
            let started = async {
                self.units.reset_failed(&unit).await?;
                self.units
                    .job(JobKind::Start, &unit, super::JOB_TIMEOUT)
                    .await?;
                Ok::<_, ManagerError>(())
            }
            .await;
            match started {
                Ok(()) => {
                    *self.restarts.entry(w.service).or_default() += 1;
                    tracing::info!(%unit, "restarted after a failure");
                    self.publish();
                }
                // The unit is failed again: its change signal schedules the
                // next try with a longer backoff.
                Err(e) => tracing::warn!(%unit, "restart failed: {e}"),
            }
        }
    }
}
