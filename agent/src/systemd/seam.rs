//! The seam in front of systemd: what the orchestrators (the service
//! manager, deploys, restores) ask of it. [`super::Systemd`] implements it
//! over D-Bus; the unit tests use a hand-written fake ([`super::fake`]) so
//! the policies behind these calls (backoff, rolling restarts, the deploy
//! gate and its way back) are tested in milliseconds without a booted host.

use futures_util::stream::BoxStream;

use super::{ExecContext, JobError, JobKind, ServiceOutcome, Systemd, SystemdError, UnitStates};
use crate::config::UnitName;

pub trait Units: UnitStates + Clone + Send + Sync + 'static {
    /// Start, stop or restart `unit` and wait (bounded) for the job's end.
    fn job(
        &self,
        kind: JobKind,
        unit: &UnitName,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Clears a failed unit so it can be started again.
    fn reset_failed(
        &self,
        unit: &UnitName,
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// Loaded units matching a glob (`api@*.service`), whatever their state.
    fn units_matching(
        &self,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<String>, SystemdError>> + Send;

    /// How a service's main process last ended.
    fn service_outcome(
        &self,
        unit: &UnitName,
    ) -> impl Future<Output = Result<ServiceOutcome, SystemdError>> + Send;

    /// What a service's processes run as (for hooks and jobs).
    fn exec_context(
        &self,
        unit: &UnitName,
    ) -> impl Future<Output = Result<ExecContext, SystemdError>> + Send;

    /// Signals go only to subscribed clients: before any [`Units::watch_unit`].
    fn subscribe(&self) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// Yields `unit` whenever its ActiveState changes.
    fn watch_unit(
        &self,
        unit: &UnitName,
    ) -> impl Future<Output = Result<BoxStream<'static, UnitName>, SystemdError>> + Send;

    /// daemon-reload.
    fn reload(&self) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// The unit's last journal lines, for an error message; never fails
    /// (a journal that cannot be read says so in the text).
    fn journal_tail(&self, unit: &UnitName) -> impl Future<Output = String> + Send;
}

impl Units for Systemd {
    async fn job(
        &self,
        kind: JobKind,
        unit: &UnitName,
        timeout: std::time::Duration,
    ) -> Result<(), JobError> {
        Systemd::job(self, kind, unit, timeout).await
    }

    async fn reset_failed(&self, unit: &UnitName) -> Result<(), SystemdError> {
        Systemd::reset_failed(self, unit).await
    }

    async fn units_matching(&self, pattern: &str) -> Result<Vec<String>, SystemdError> {
        Systemd::units_matching(self, pattern).await
    }

    async fn service_outcome(&self, unit: &UnitName) -> Result<ServiceOutcome, SystemdError> {
        Systemd::service_outcome(self, unit).await
    }

    async fn exec_context(&self, unit: &UnitName) -> Result<ExecContext, SystemdError> {
        Systemd::exec_context(self, unit).await
    }

    async fn subscribe(&self) -> Result<(), SystemdError> {
        Systemd::subscribe(self).await
    }

    async fn watch_unit(
        &self,
        unit: &UnitName,
    ) -> Result<BoxStream<'static, UnitName>, SystemdError> {
        Systemd::watch_unit(self, unit).await
    }

    async fn reload(&self) -> Result<(), SystemdError> {
        Systemd::reload(self).await
    }

    async fn journal_tail(&self, unit: &UnitName) -> String {
        super::journal_tail(unit).await
    }
}
