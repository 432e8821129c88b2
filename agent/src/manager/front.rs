//! An app behind hostd's front: its instances listen on private ports and
//! the front forwards its public port to those it is told. So an instance
//! enters the front only once healthy, leaves it before it stops and is
//! stopped only when its requests have ended (or `drain_timeout` passed);
//! and a restart for a new release is blue-green: the other set of
//! instances starts on ports of its own, passes the gate, takes over the
//! front, then the old set drains and stops. No request meets a closed
//! port, whatever the app does on SIGTERM.

use super::{Gate, JOB_TIMEOUT, Manager, ManagerError, Progress};
use crate::config::UnitName;
use crate::desired::WantedUnit;
use crate::systemd::{JobKind, Units};

impl<U: Units> Manager<U> {
    pub(super) fn behind_front(&self, service: &str) -> bool {
        self.config
            .services
            .get(service)
            .is_some_and(|s| s.is_app() && s.port.is_some())
    }

    /// The private port of `unit`, an instance of `service`.
    fn port_of(&self, service: &str, unit: &UnitName) -> Option<u16> {
        let svc = self.config.services.get(service)?;
        svc.instance_port(svc.unit.instance_of(unit.as_str())?)
    }

    fn ports(&self, service: &str, units: &[WantedUnit]) -> Vec<u16> {
        units
            .iter()
            .filter_map(|w| self.port_of(service, &w.unit))
            .collect()
    }

    /// The front forwards `service` to its wanted instances (none when it
    /// is stopped).
    pub(super) async fn route_wanted(&self, service: &str) -> Result<(), ManagerError> {
        let wanted: Vec<WantedUnit> = self
            .wanted_of(service)
            .into_iter()
            .filter(|w| w.running)
            .collect();
        let ports = self.ports(service, &wanted);
        self.routing.route(service, &ports).await?;
        Ok(())
    }

    /// Waits for the requests in flight to `units` to end, bounded by the
    /// service's `drain_timeout`, then stops them. Call once they are out
    /// of the front.
    pub(super) async fn drain_and_stop(
        &mut self,
        service: &str,
        units: &[UnitName],
    ) -> Result<(), ManagerError> {
        let ports: Vec<u16> = units
            .iter()
            .filter_map(|u| self.port_of(service, u))
            .collect();
        let bound = self
            .config
            .services
            .get(service)
            .map(|s| s.drain_timeout.0)
            .unwrap_or_default();
        if !ports.is_empty() && !self.routing.drain(&ports, bound).await? {
            tracing::warn!(
                service,
                ?ports,
                "requests still in flight after drain_timeout ({}s); stopping anyway",
                bound.as_secs()
            );
        }
        for unit in units {
            self.scheduled.remove(unit);
            self.units.job(JobKind::Stop, unit, JOB_TIMEOUT).await?;
        }
        Ok(())
    }

    /// Replaces every instance of `service` with one of the other set, each
    /// through `gate`, then moves the front over and drains and stops the
    /// old set. A new instance that fails stops the new set; the old one
    /// never stopped serving.
    pub(super) async fn blue_green(
        &mut self,
        service: &str,
        gate: &Gate,
        progress: Option<&Progress>,
    ) -> Result<(), ManagerError> {
        let svc = self.service(service)?.clone();
        let old: Vec<UnitName> = self
            .wanted_of(service)
            .into_iter()
            .map(|w| w.unit)
            .collect();
        self.flip_set(service);
        let new = self.wanted_of(service);
        let mut started = Vec::new();
        let mut result = Ok(());
        for w in &new {
            let step = format!("start {}", w.unit);
            let began = super::step_begins(progress, &step);
            self.histories.remove(&w.unit);
            started.push(w.unit.clone());
            self.watch(&w.unit).await;
            result = self.start_gated(&svc, w, Some(gate)).await;
            if result.is_err() {
                break;
            }
            super::step_done(progress, step, began);
        }
        if result.is_ok() {
            result = self.route_wanted(service).await;
        }
        if let Err(e) = result {
            // Back to the set that serves: the front never left it.
            self.flip_set(service);
            for unit in &started {
                self.scheduled.remove(unit);
                if let Err(stop) = self.units.job(JobKind::Stop, unit, JOB_TIMEOUT).await {
                    tracing::error!(%unit, "cannot stop the new instance: {stop}");
                }
            }
            return Err(e);
        }
        self.store.save(&self.desired)?;
        self.publish();
        self.drain_and_stop(service, &old).await
    }

    /// Starts `w` afresh, through `gate` when there is one.
    pub(super) async fn start_gated(
        &mut self,
        svc: &crate::config::ServiceConfig,
        w: &WantedUnit,
        gate: Option<&Gate>,
    ) -> Result<(), ManagerError> {
        self.units.reset_failed(&w.unit).await?;
        self.units.job(JobKind::Start, &w.unit, JOB_TIMEOUT).await?;
        match gate {
            Some(gate) => self.wait_healthy(svc, w, gate).await,
            None => Ok(()),
        }
    }

    fn flip_set(&mut self, service: &str) {
        if let Some(d) = self.desired.services.get_mut(service) {
            d.second_set = !d.second_set;
        }
    }
}
