//! One apply, run in the operations task: write the file, switch every
//! part of hostd to the new configuration, wait for the host to be
//! healthy, and otherwise put the previous configuration back the same way.

use std::time::{Duration, Instant};

use hostd_api::{ApplyEvent, ApplyOutcome, ApplyRecord, HealthStatus};
use tokio::sync::mpsc;

use super::{ConfigHandle, HostConfigError, Loaded, file, plan};
use crate::ops::{Holder, Operation};

/// Who asked, as the ledger records it.
pub struct Requester {
    pub requested_by: String,
    pub caller: Option<String>,
    pub lock_wait: Duration,
    pub health_timeout: Duration,
}

pub type Events = mpsc::UnboundedSender<ApplyEvent>;

impl ConfigHandle {
    /// Checks `new` against the configuration in force and queues the
    /// apply; refused at once (nothing changed) when it needs a restart of
    /// hostd or the lock is held and may not be waited for.
    /// `write`: false when the file already holds `new` (a reload).
    pub async fn submit(
        &self,
        new: Loaded,
        who: Requester,
        events: Events,
        write: bool,
    ) -> Result<(), HostConfigError> {
        let planned = self.planned(&self.running(), &new);
        if !planned.changes.at_start.is_empty() {
            return Err(HostConfigError::NeedsRestart {
                keys: planned.changes.at_start,
            });
        }
        let this = self.clone();
        let holder = Holder::new("apply hostd.toml", &who.requested_by);
        let waiting = events.clone();
        let op = Operation::new(holder, who.lock_wait, async move {
            let record = this.apply(new, &who, &events, write).await;
            let _ = events.send(ApplyEvent::Finished { record });
        })
        .on_waiting(move |h| {
            let _ = waiting.send(ApplyEvent::Waiting {
                holder: h.to_string(),
            });
        });
        self.inner.ops.submit(op).await?;
        Ok(())
    }

    /// `systemctl reload hostd`: the file as it is on the host now.
    pub async fn reload_from_file(&self) {
        let new = match file::load(&self.inner.path) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(
                    "reload refused, the running configuration stays: {}",
                    hostd_api::error_chain(&e)
                );
                return;
            }
        };
        let who = Requester {
            requested_by: "systemctl reload hostd".into(),
            caller: None,
            lock_wait: super::DEFAULT_HEALTH_TIMEOUT,
            health_timeout: super::DEFAULT_HEALTH_TIMEOUT,
        };
        let (events, mut rx) = mpsc::unbounded_channel();
        if let Err(e) = self.submit(new, who, events, false).await {
            tracing::error!(
                "reload refused, the running configuration stays: {}",
                hostd_api::error_chain(&e)
            );
            return;
        }
        while let Some(event) = rx.recv().await {
            if let ApplyEvent::Finished { record } = event {
                let outcome = record.outcome.as_str();
                match &record.error {
                    None => tracing::info!("reload finished: {outcome}"),
                    Some(why) => {
                        tracing::error!("reload finished: {outcome}: {why}")
                    }
                }
            }
        }
    }

    async fn apply(
        &self,
        new: Loaded,
        who: &Requester,
        events: &Events,
        write: bool,
    ) -> ApplyRecord {
        let began = Instant::now();
        let old = self.running();
        let planned = self.planned(&old, &new);
        let mut record = ApplyRecord {
            at: hostd_api::time::now_rfc3339(),
            requested_by: who.requested_by.clone(),
            caller: who.caller.clone(),
            source: new.source.clone().unwrap_or_else(|| "hostd.toml".into()),
            digest: planned.plan.digest.clone(),
            previous_digest: planned.plan.current_digest.clone(),
            outcome: ApplyOutcome::Unchanged,
            actions: planned.plan.actions.clone(),
            seconds: 0.0,
            error: None,
        };
        // Checked again: another apply may have run while this one waited.
        if !planned.changes.at_start.is_empty() {
            record.outcome = ApplyOutcome::Refused;
            let refusal = HostConfigError::NeedsRestart {
                keys: planned.changes.at_start,
            };
            record.error = Some(refusal.to_string());
            return self.finish(record, began);
        }
        if planned.plan.is_empty() {
            // The text may differ in comments only: the file follows it.
            if write && let Err(e) = file::write(&self.inner.path, &new) {
                tracing::warn!("{}", hostd_api::error_chain(&e));
            }
            *super::lock(&self.inner.running) = new;
            return self.finish(record, began);
        }
        let result = self
            .switch(&new, &planned.changes, who.health_timeout, events, write)
            .await;
        record.outcome = ApplyOutcome::Applied;
        if let Err(why) = result {
            tracing::error!(
                "the new configuration did not come up: {why}; putting the previous one back"
            );
            if !write {
                // A hand-edited file is kept for its author to look at.
                let rejected = self.inner.path.with_extension("toml.rejected");
                if let Err(e) = std::fs::copy(&self.inner.path, &rejected) {
                    tracing::warn!(
                        "cannot keep the rejected file as {}: {e}",
                        rejected.display()
                    );
                }
            }
            let back = self.planned(&new, &old).changes;
            let put_back = self
                .switch(&old, &back, who.health_timeout, events, true)
                .await;
            record.outcome = if put_back.is_ok() {
                ApplyOutcome::RolledBack
            } else {
                ApplyOutcome::Failed
            };
            record.error = Some(match put_back {
                Ok(()) => format!("{why}; the previous configuration was put back"),
                Err(again) => {
                    format!("{why}; putting the previous configuration back failed too: {again}")
                }
            });
        }
        self.finish(record, began)
    }

    fn finish(&self, mut record: ApplyRecord, began: Instant) -> ApplyRecord {
        record.seconds = began.elapsed().as_secs_f64();
        self.record(&record);
        record
    }

    /// Makes `to` the configuration in force and waits for the host to be
    /// healthy under it.
    async fn switch(
        &self,
        to: &Loaded,
        changes: &plan::Changes,
        health_timeout: Duration,
        events: &Events,
        write: bool,
    ) -> Result<(), String> {
        let step = |name: &str| {
            let _ = events.send(ApplyEvent::Step {
                step: name.to_owned(),
            });
            (name.to_owned(), Instant::now())
        };
        let done = |(name, at): (String, Instant)| {
            let _ = events.send(ApplyEvent::StepDone {
                step: name,
                seconds: at.elapsed().as_secs_f64(),
            });
        };
        let chain = |e: &dyn std::error::Error| hostd_api::error_chain(e);
        if write {
            let s = step("write hostd.toml");
            file::write(&self.inner.path, to).map_err(|e| chain(&e))?;
            done(s);
        }
        let switched_at = tokio::time::Instant::now();
        *super::lock(&self.inner.running) = to.clone();
        self.inner.switch.send_replace(to.config.clone());
        let s = step("install units");
        self.install_units(to).await?;
        done(s);
        if changes.secrets {
            let s = step("deliver secrets");
            let skip = changes.restart.iter().cloned().collect();
            let synced = self
                .inner
                .secrets
                .reconfigure(to.config.clone(), skip)
                .await
                .map_err(|e| chain(&e))?;
            // Without `[secrets]` there is nothing to fetch, and nothing
            // the services could lack.
            if to.config.secrets.is_some()
                && let Some(e) = synced.error
            {
                return Err(format!("secrets: {e}"));
            }
            done(s);
        }
        if changes.backup {
            let s = step("reconfigure backups");
            self.inner.backup.reconfigure(to.config.clone()).await;
            done(s);
        }
        if changes.jobs {
            let s = step("install jobs");
            self.inner.jobs.install().await.map_err(|e| chain(&e))?;
            done(s);
        }
        // The manager reports each instance it restarts; they go out as
        // the apply's own steps. The relay ends when the manager drops its
        // end, at the end of the reconfiguration.
        let (progress, mut steps) = mpsc::unbounded_channel();
        let relay = async {
            while let Some(e) = steps.recv().await {
                let event = match e {
                    hostd_api::DeployEvent::Step { step } => ApplyEvent::Step { step },
                    hostd_api::DeployEvent::StepDone { step, seconds } => {
                        ApplyEvent::StepDone { step, seconds }
                    }
                    _ => continue,
                };
                let _ = events.send(event);
            }
        };
        let reconfigure = self.inner.manager.reconfigure(
            to.config.clone(),
            changes.restart.clone(),
            changes.scale.clone(),
            progress,
        );
        let (reconfigured, ()) = tokio::join!(reconfigure, relay);
        reconfigured.map_err(|e| chain(&e))?;
        let s = step("wait for health");
        self.wait_healthy(switched_at, health_timeout).await?;
        done(s);
        Ok(())
    }

    async fn install_units(&self, to: &Loaded) -> Result<(), String> {
        let chain = |e: &dyn std::error::Error| hostd_api::error_chain(e);
        let systemd = &self.inner.systemd;
        let apps = crate::units::apps::install(&to.config, systemd)
            .await
            .map_err(|e| chain(&e))?;
        let front = crate::units::front::install(&to.config).map_err(|e| chain(&e))?;
        if apps || front.changed {
            systemd.reload().await.map_err(|e| chain(&e))?;
        }
        if front.changed {
            crate::units::front::start(systemd, &front)
                .await
                .map_err(|e| chain(&e))?;
        }
        Ok(())
    }

    /// A round that began after the switch and found nothing unhealthy.
    async fn wait_healthy(
        &self,
        since: tokio::time::Instant,
        bound: Duration,
    ) -> Result<(), String> {
        let mut snapshots = self.inner.snapshots.clone();
        let healthy = snapshots
            .wait_for(|s| s.round_started >= since && s.report.status != HealthStatus::Unhealthy);
        match tokio::time::timeout(bound, healthy).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("the health checker stopped".into()),
            Err(_) => {
                let snap = self.inner.snapshots.borrow().clone();
                let failing: Vec<String> = snap
                    .report
                    .components
                    .iter()
                    .filter(|c| c.status == HealthStatus::Unhealthy)
                    .map(|c| match &c.reason {
                        Some(d) => format!("{} ({d})", c.name),
                        None => c.name.clone(),
                    })
                    .collect();
                Err(format!(
                    "the host was not healthy {}s after the change: {}",
                    bound.as_secs(),
                    failing.join(", ")
                ))
            }
        }
    }
}
