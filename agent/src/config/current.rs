//! The configuration hostd runs now. It changes when an apply or a reload
//! (`systemctl reload hostd`) switches to a new one: subsystems that act
//! per request (deploys, restores, jobs, health rounds, status) read it at
//! each use instead of keeping the one they started with.

use std::sync::Arc;

use tokio::sync::watch;

use super::Config;

#[derive(Clone, Debug)]
pub struct CurrentConfig(watch::Receiver<Arc<Config>>);

impl CurrentConfig {
    /// The sender is the one place that switches configurations.
    pub fn new(config: Arc<Config>) -> (watch::Sender<Arc<Config>>, Self) {
        let (tx, rx) = watch::channel(config);
        (tx, Self(rx))
    }

    /// A configuration that never changes (tests, one-shot commands).
    pub fn fixed(config: Arc<Config>) -> Self {
        Self(watch::channel(config).1)
    }

    pub fn get(&self) -> Arc<Config> {
        Arc::clone(&self.0.borrow())
    }

    /// Resolves when a new configuration is in force (never, once the
    /// sender is gone).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
