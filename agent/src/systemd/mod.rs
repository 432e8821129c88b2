//! systemd over its D-Bus API (zbus). Never `systemctl`: exit codes of a CLI
//! are not a state, and D-Bus gives typed answers and signals.

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use hostd_api::ActiveState;
use zbus::proxy::CacheProperties;
use zbus_systemd::systemd1::{ManagerProxy, UnitProxy};

use crate::config::UnitName;

mod exec;
#[cfg(test)]
pub mod fake;
mod jobs;
pub mod journal;
mod seam;
mod timers;
pub use exec::ExecContext;
pub use jobs::{JobError, JobKind, ServiceOutcome, journal_tail};
pub use seam::Units;
pub use timers::{RunState, TimerState};

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot connect to the system bus (is dbus running?)")]
    Connect(#[source] zbus::Error),
    #[error("systemd could not load unit {unit}")]
    LoadUnit {
        unit: String,
        #[source]
        source: zbus::Error,
    },
    #[error("cannot subscribe to systemd's unit signals")]
    Subscribe(#[source] zbus::Error),
    #[error("cannot read the state of unit {unit}")]
    Property {
        unit: String,
        #[source]
        source: zbus::Error,
    },
}

/// A unit's state as the health checker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `loaded`, `not-found`, `masked`, `error`...
    pub load_state: String,
    pub active_state: ActiveState,
    pub sub_state: String,
}

/// The narrow view of systemd the health checker uses, so its logic can be
/// unit-tested with a hand-written fake; integration tests use the real bus.
pub trait UnitStates {
    fn unit_state(
        &self,
        unit: &UnitName,
    ) -> impl Future<Output = Result<UnitState, SystemdError>> + Send;
}

#[derive(Clone)]
pub struct Systemd {
    pub(crate) conn: zbus::Connection,
    pub(crate) manager: ManagerProxy<'static>,
}

impl Systemd {
    /// The system bus; `DBUS_SYSTEM_BUS_ADDRESS` overrides it (handy to point
    /// a hostd on the workstation at a sandbox's bus).
    pub async fn connect() -> Result<Self, SystemdError> {
        let conn = zbus::Connection::system()
            .await
            .map_err(SystemdError::Connect)?;
        let manager = ManagerProxy::new(&conn)
            .await
            .map_err(SystemdError::Connect)?;
        Ok(Self { conn, manager })
    }

    /// systemd only emits unit signals to clients that subscribed.
    pub async fn subscribe(&self) -> Result<(), SystemdError> {
        self.manager
            .subscribe()
            .await
            .map_err(SystemdError::Subscribe)
    }

    /// Yields `unit` whenever its ActiveState changes, from systemd's
    /// PropertiesChanged signals (after [`Systemd::subscribe`]): hostd
    /// learns of a stopped or failed unit when it happens, not at a poll.
    pub async fn watch_unit(
        &self,
        unit: &UnitName,
    ) -> Result<BoxStream<'static, UnitName>, SystemdError> {
        // Signals need the property cache, unlike reads (see unit_state).
        let proxy = self.unit_proxy(unit, CacheProperties::Lazily).await?;
        let changes = proxy.receive_active_state_changed().await;
        let unit = unit.clone();
        // The closure owns the proxy so it lives as long as its stream.
        Ok(changes
            .map(move |_| {
                let _owned = &proxy;
                unit.clone()
            })
            .boxed())
    }

    async fn unit_proxy(
        &self,
        unit: &UnitName,
        cache: CacheProperties,
    ) -> Result<UnitProxy<'static>, SystemdError> {
        UnitProxy::builder(&self.conn)
            .path(self.object_path(unit).await?)
            .cache_properties(cache)
            .build()
            .await
            .map_err(|source| SystemdError::LoadUnit {
                unit: unit.to_string(),
                source,
            })
    }

    /// The unit's object on the bus. LoadUnit, not GetUnit: a stopped unit
    /// may have been garbage collected, and GetUnit would then fail
    /// although the unit exists.
    pub(crate) async fn object_path(
        &self,
        unit: &UnitName,
    ) -> Result<zbus::OwnedObjectPath, SystemdError> {
        self.manager
            .load_unit(unit.to_string())
            .await
            .map_err(|source| SystemdError::LoadUnit {
                unit: unit.to_string(),
                source,
            })
    }
}

impl UnitStates for Systemd {
    async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, SystemdError> {
        // Cached properties lag behind right after a job: read fresh.
        let proxy = self.unit_proxy(unit, CacheProperties::No).await?;
        let prop_err = |source| SystemdError::Property {
            unit: unit.to_string(),
            source,
        };
        let (load_state, active_state, sub_state) =
            tokio::try_join!(proxy.load_state(), proxy.active_state(), proxy.sub_state())
                .map_err(prop_err)?;
        Ok(UnitState {
            load_state,
            active_state: ActiveState::parse(&active_state),
            sub_state,
        })
    }
}

impl<T: UnitStates + Send + Sync> UnitStates for std::sync::Arc<T> {
    async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, SystemdError> {
        T::unit_state(self, unit).await
    }
}
