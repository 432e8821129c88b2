//! What a deploy asks of the host: the service's execution context, a hook
//! run to its end, and every instance restarted through the health gate.
//! [`LiveHost`] is systemd and the service manager; the unit tests use a
//! fake that scripts hook results and failing releases.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::hooks::{Exit, Hook, HookError};
use crate::config::UnitName;
use crate::manager::{Gate, ManagerError, ManagerHandle, Progress};
use crate::systemd::{ExecContext, SystemdError, Units};

pub trait DeployHost: Clone + Send + Sync + 'static {
    fn exec_context(
        &self,
        unit: &UnitName,
    ) -> impl Future<Output = Result<ExecContext, SystemdError>> + Send;

    /// Runs `hook` to its end, whatever its exit status; each output line
    /// goes to `line`.
    fn run_to_end<'a>(
        &'a self,
        hook: &'a Hook<'a>,
        line: &'a mut (dyn FnMut(String) + Send),
    ) -> BoxFuture<'a, Result<Exit, HookError>>;

    /// Restarts every instance of `service` one at a time, each through
    /// `gate`, reporting each restart on `progress`.
    fn rollout(
        &self,
        service: &str,
        gate: &Gate,
        progress: Progress,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send;
}

#[derive(Clone)]
pub struct LiveHost<U> {
    pub units: U,
    pub manager: ManagerHandle,
}

impl<U: Units> DeployHost for LiveHost<U> {
    async fn exec_context(&self, unit: &UnitName) -> Result<ExecContext, SystemdError> {
        self.units.exec_context(unit).await
    }

    fn run_to_end<'a>(
        &'a self,
        hook: &'a Hook<'a>,
        line: &'a mut (dyn FnMut(String) + Send),
    ) -> BoxFuture<'a, Result<Exit, HookError>> {
        hook.run_to_end(line).boxed()
    }

    async fn rollout(
        &self,
        service: &str,
        gate: &Gate,
        progress: Progress,
    ) -> Result<(), ManagerError> {
        self.manager
            .rollout(service.to_owned(), gate.clone(), progress)
            .await
            .map(|_| ())
    }
}
