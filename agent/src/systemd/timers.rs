//! What a scheduled job's two units say: the service's last run and the
//! timer's next one.

use hostd_api::ActiveState;
use zbus::proxy::CacheProperties;
use zbus_systemd::systemd1::TimerProxy;

use super::{Systemd, SystemdError, UnitStates};
use crate::config::UnitName;

/// The service of a job, fresh from systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    pub active_state: ActiveState,
    /// When the last (or current) run's process started, µs since the
    /// epoch; 0: never since the unit was loaded.
    pub start_usec: u64,
    /// When it ended; 0 while it runs or if it never ran.
    pub exit_usec: u64,
    /// systemd's `Result`: `success`, `exit-code`, `timeout`, `signal`...
    pub result: String,
    /// The exit status, when the process exited by itself.
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerState {
    pub active_state: ActiveState,
    /// µs since the epoch; 0: nothing scheduled.
    pub next_elapse_usec: u64,
    pub last_trigger_usec: u64,
}

/// `CLD_EXITED`: the process ended by itself (its status is an exit code).
const CLD_EXITED: i32 = 1;

impl Systemd {
    pub async fn run_state(&self, unit: &UnitName) -> Result<RunState, SystemdError> {
        let prop = |source| SystemdError::Property {
            unit: unit.to_string(),
            source,
        };
        let state = self.unit_state(unit).await?;
        let service = self.service_proxy(unit).await?;
        let (start, exit, result, code, status) = tokio::try_join!(
            service.exec_main_start_timestamp(),
            service.exec_main_exit_timestamp(),
            service.result(),
            service.exec_main_code(),
            service.exec_main_status(),
        )
        .map_err(prop)?;
        Ok(RunState {
            active_state: state.active_state,
            start_usec: start,
            exit_usec: exit,
            result,
            exit_code: (code == CLD_EXITED).then_some(status),
        })
    }

    pub async fn timer_state(&self, unit: &UnitName) -> Result<TimerState, SystemdError> {
        let prop = |source| SystemdError::Property {
            unit: unit.to_string(),
            source,
        };
        let state = self.unit_state(unit).await?;
        let timer = TimerProxy::builder(&self.conn)
            .path(self.object_path(unit).await?)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(prop)?;
        let (next, last) = tokio::try_join!(
            timer.next_elapse_u_sec_realtime(),
            timer.last_trigger_u_sec()
        )
        .map_err(prop)?;
        Ok(TimerState {
            active_state: state.active_state,
            next_elapse_usec: next,
            last_trigger_usec: last,
        })
    }

    /// Disables unit files (removes their [Install] links). Idempotent.
    pub async fn disable(&self, units: &[String]) -> Result<(), SystemdError> {
        if units.is_empty() {
            return Ok(());
        }
        self.manager
            .disable_unit_files(units.to_vec(), false)
            .await
            .map(|_| ())
            .map_err(|source| SystemdError::LoadUnit {
                unit: units.join(" "),
                source,
            })
    }
}
