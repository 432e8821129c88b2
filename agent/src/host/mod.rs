//! This host as hostctl sees it: its name, how long hostd has run, which
//! hostd build runs (hashed once at start), its EC2 identity (from IMDSv2,
//! discovered in the background), and `GET /v1/status`, which puts those
//! beside the health snapshot and the manager's view.

pub mod http;
pub mod identity;
mod imds;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hostd_api::InstanceIdentity;
use tokio::sync::watch;

use crate::config::CurrentConfig;
use crate::desired::ManagerView;
use crate::health::Snapshot;
use crate::lifetime::Lifetime;

/// `AWS_EC2_METADATA_DISABLED=true`: no identity will come.
pub fn metadata_disabled() -> bool {
    imds::disabled()
}

/// This machine's hostname ("" when unreadable).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

pub struct Deps {
    pub snapshot: watch::Receiver<Snapshot>,
    pub view: watch::Receiver<ManagerView>,
    /// The last apply of the configuration, for `hostctl status`.
    pub last_apply: watch::Receiver<Option<hostd_api::ApplyRecord>>,
    pub shipping: watch::Receiver<crate::cloudwatch::ShippingState>,
}

#[derive(Clone)]
pub struct HostHandle {
    config: CurrentConfig,
    started: Instant,
    hostname: String,
    instance: Arc<OnceLock<InstanceIdentity>>,
    build: Arc<OnceLock<String>>,
    snapshot: watch::Receiver<Snapshot>,
    view: watch::Receiver<ManagerView>,
    last_apply: watch::Receiver<Option<hostd_api::ApplyRecord>>,
    shipping: watch::Receiver<crate::cloudwatch::ShippingState>,
}

impl HostHandle {
    /// The EC2 identity, once instance metadata has given it.
    pub fn instance(&self) -> Arc<OnceLock<InstanceIdentity>> {
        Arc::clone(&self.instance)
    }

    /// sha256 of the running hostd binary, once hashed.
    pub fn build(&self) -> Option<String> {
        self.build.get().cloned()
    }
}

/// `started` is when hostd began (uptime counts from there).
pub fn spawn(
    config: CurrentConfig,
    deps: Deps,
    started: Instant,
    lifetime: &Lifetime,
) -> HostHandle {
    let instance = Arc::new(OnceLock::new());
    lifetime.spawn(
        "instance identity",
        identity::discover_patiently(Arc::clone(&instance)),
    );
    let build = Arc::new(OnceLock::new());
    let hashed = Arc::clone(&build);
    lifetime.spawn_blocking("build hash", move || {
        match std::env::current_exe().and_then(|p| build_of(&p)) {
            Ok(b) => {
                let _ = hashed.set(b);
            }
            Err(e) => tracing::warn!("cannot hash the running hostd binary: {e}"),
        }
    });
    HostHandle {
        config,
        started,
        hostname: hostname(),
        instance,
        build,
        snapshot: deps.snapshot,
        view: deps.view,
        last_apply: deps.last_apply,
        shipping: deps.shipping,
    }
}

/// sha256 of a file, streamed.
pub fn build_of(path: &std::path::Path) -> std::io::Result<String> {
    crate::deploy::artifacts::sha256_hex(std::fs::File::open(path)?)
}
