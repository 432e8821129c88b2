//! Which instance gets a request: the one with the fewest requests in
//! flight (ties to the one added first), skipping for a moment an instance
//! that refused a connection. Counts survive a reload of the routes, so a
//! removed instance's in-flight requests can be waited for (draining).
//!
//! An instance is sent at most [`MAX_SENT_PER_INSTANCE`] requests at once;
//! more wait here. Unbounded, a burst of new clients became as many new
//! connections to the app at once, overflowing its listen backlog (Node's
//! is 511), and the kernel's SYN retry stalled those requests for a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::routes::RoutesFile;

/// How long an instance that refused a connection is passed over.
const REFUSED_FOR: Duration = Duration::from_secs(2);

/// Requests one instance is sent at once, so also the most connections
/// the front keeps to it: more than an app process serves at once with
/// profit, and well under the listen backlogs of Node (511), puma (1024),
/// gunicorn (2048) and Go (the kernel's 4096).
pub const MAX_SENT_PER_INSTANCE: usize = 128;

/// How long a request waits for an instance that has as many as it is
/// sent at once, before the front answers 503.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Backend {
    pub port: u16,
    /// Requests sent or waiting to be; what "least busy" compares.
    in_flight: AtomicU64,
    sending: Arc<Semaphore>,
    refused_until: Mutex<Option<Instant>>,
}

impl Backend {
    fn new(port: u16) -> Self {
        Self {
            port,
            in_flight: AtomicU64::new(0),
            sending: Arc::new(Semaphore::new(MAX_SENT_PER_INSTANCE)),
            refused_until: Mutex::new(None),
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn refused(&self) {
        if let Ok(mut until) = self.refused_until.lock() {
            *until = Some(Instant::now() + REFUSED_FOR);
        }
    }

    fn is_refusing(&self, now: Instant) -> bool {
        self.refused_until
            .lock()
            .is_ok_and(|u| u.is_some_and(|until| until > now))
    }
}

/// A request in flight to `backend`, counted until dropped (after the
/// response body has been sent).
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
    sending: Option<OwnedSemaphorePermit>,
}

/// The instance was sent as many requests as it may be for all of `wait`.
#[derive(Debug)]
pub struct Busy;

impl InFlight {
    /// Counted at once (so other requests pick a less busy instance), sent
    /// once the instance has fewer than [`MAX_SENT_PER_INSTANCE`], waiting
    /// at most `wait` for that.
    pub async fn start(backend: Arc<Backend>, wait: Duration) -> Result<Self, Busy> {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut this = Self {
            sending: None,
            backend,
        };
        let slot = Arc::clone(&this.backend.sending).acquire_owned();
        match tokio::time::timeout(wait, slot).await {
            Ok(Ok(permit)) => {
                this.sending = Some(permit);
                Ok(this)
            }
            // The semaphore is never closed; a timeout is the only way here.
            _ => Err(Busy),
        }
    }

    /// A tunnelled (upgraded) connection is no longer one of the requests
    /// the instance is sent at once, but it stays in flight: a drain waits
    /// for it.
    pub fn tunnelled(&mut self) {
        self.sending = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every service's backends, replaced as a whole on reload.
#[derive(Debug, Default)]
pub struct Table {
    services: RwLock<HashMap<String, Arc<[Arc<Backend>]>>>,
    /// Every backend ever routed to and still counted, by port: a reload
    /// keeps the counts of those still there and of those draining.
    known: Mutex<HashMap<u16, Arc<Backend>>>,
}

impl Table {
    pub fn apply(&self, routes: &RoutesFile) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut services = HashMap::new();
        for (name, route) in &routes.services {
            let backends: Vec<Arc<Backend>> = route
                .backends
                .iter()
                .map(|&port| {
                    Arc::clone(
                        known
                            .entry(port)
                            .or_insert_with(|| Arc::new(Backend::new(port))),
                    )
                })
                .collect();
            services.insert(name.clone(), backends.into());
        }
        // Forget what is neither routed to nor busy any more.
        let routed: Vec<u16> = routes
            .services
            .values()
            .flat_map(|r| r.backends.iter().copied())
            .collect();
        known.retain(|port, b| routed.contains(port) || b.in_flight() > 0);
        *self.services.write().unwrap_or_else(|p| p.into_inner()) = services;
    }

    /// The least busy backend of `service` not in `tried`; a refusing one
    /// only when nothing else is left.
    pub fn pick(&self, service: &str, tried: &[u16]) -> Option<Arc<Backend>> {
        let backends = self
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()?;
        let now = Instant::now();
        let open = backends.iter().filter(|b| !tried.contains(&b.port));
        let least = |it: &mut dyn Iterator<Item = &Arc<Backend>>| {
            it.min_by_key(|b| b.in_flight()).map(Arc::clone)
        };
        least(&mut open.clone().filter(|b| !b.is_refusing(now)))
            .or_else(|| least(&mut open.clone()))
    }

    pub fn has_service(&self, service: &str) -> bool {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(service)
    }

    /// `(port, in flight)` of every backend still counted, routed or
    /// draining.
    pub fn in_flight(&self) -> Vec<(u16, u64)> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(u16, u64)> = known.iter().map(|(p, b)| (*p, b.in_flight())).collect();
        all.sort_unstable();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::routes::ServiceRoute;

    fn routes(ports: &[u16]) -> RoutesFile {
        RoutesFile {
            services: [(
                "web".to_owned(),
                ServiceRoute {
                    backends: ports.to_vec(),
                },
            )]
            .into(),
        }
    }

    async fn start(b: Arc<Backend>) -> Result<InFlight, String> {
        InFlight::start(b, MAX_WAIT)
            .await
            .map_err(|Busy| format!("a backend with room waited {MAX_WAIT:?}"))
    }

    #[tokio::test]
    async fn the_least_busy_wins_and_a_refusing_one_waits() -> Result<(), String> {
        let t = Table::default();
        t.apply(&routes(&[3001, 3002]));
        let first = t.pick("web", &[]).map(|b| b.port);
        assert_eq!(first, Some(3001), "ties go to the first added");
        let busy = start(t.pick("web", &[]).ok_or("no backend")?).await?;
        assert_eq!(t.pick("web", &[]).map(|b| b.port), Some(3002));
        drop(busy);
        if let Some(b) = t.pick("web", &[]) {
            b.refused();
        }
        assert_eq!(t.pick("web", &[]).map(|b| b.port), Some(3002));
        assert_eq!(
            t.pick("web", &[3002]).map(|b| b.port),
            Some(3001),
            "nothing else left"
        );
        assert!(t.pick("web", &[3001, 3002]).is_none());
        assert!(t.pick("api", &[]).is_none());
        Ok(())
    }

    #[tokio::test]
    async fn a_removed_backend_stays_counted_until_its_requests_end() -> Result<(), String> {
        let t = Table::default();
        t.apply(&routes(&[3001]));
        let held = start(t.pick("web", &[]).ok_or("no backend")?).await?;
        t.apply(&routes(&[3002]));
        assert_eq!(t.pick("web", &[]).map(|b| b.port), Some(3002));
        assert_eq!(t.in_flight(), [(3001, 1), (3002, 0)]);
        drop(held);
        assert_eq!(t.in_flight(), [(3001, 0), (3002, 0)]);
        t.apply(&routes(&[3002]));
        assert_eq!(t.in_flight(), [(3002, 0)]);
        Ok(())
    }

    #[tokio::test]
    async fn an_instance_sent_its_most_makes_the_next_request_wait() -> Result<(), String> {
        let t = Table::default();
        t.apply(&routes(&[3001]));
        let b = t.pick("web", &[]).ok_or("no backend")?;
        let mut sent = Vec::new();
        for _ in 0..MAX_SENT_PER_INSTANCE {
            sent.push(start(Arc::clone(&b)).await?);
        }
        let waited = InFlight::start(Arc::clone(&b), Duration::from_millis(20)).await;
        assert!(waited.is_err(), "a request past the most was sent");
        assert_eq!(b.in_flight() as usize, MAX_SENT_PER_INSTANCE);
        // An upgraded connection frees its place but stays counted.
        if let Some(first) = sent.first_mut() {
            first.tunnelled();
        }
        let next = InFlight::start(Arc::clone(&b), MAX_WAIT).await;
        assert!(next.is_ok());
        assert_eq!(b.in_flight() as usize, MAX_SENT_PER_INSTANCE + 1);
        Ok(())
    }
}
