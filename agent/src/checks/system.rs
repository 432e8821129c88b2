//! Disk, memory, load and CPU of the host, and the thresholds that turn
//! them into health.
//!
//! Memory, load and CPU from one sysinfo `System` for hostd's lifetime,
//! refreshing only what is read (a full refresh would walk every process).
//! Disks by `statvfs` on each configured path itself, so the file system
//! asked for is the one measured (sysinfo's disk list leaves out tmpfs,
//! NFS/EFS and autofs mounts), with `df`'s definition of used: blocks in
//! use over blocks in use plus those an unprivileged user may still take.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hostd_api::{ComponentHealth, HealthStatus};

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

use super::SystemProbe;
use crate::config::ChecksConfig;

/// Figures of one sample. `None` where the host did not give one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemSample {
    /// One per `checks.disk.paths` entry, in config order.
    pub disks: Vec<DiskSample>,
    pub memory_used_ratio: Option<f64>,
    pub load1: Option<f64>,
    pub cpus: usize,
    /// Average CPU use since the previous sample, 0 to 1.
    pub cpu_usage_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskSample {
    pub path: PathBuf,
    /// The mount point of the file system holding `path`; None when no
    /// file system was found for it.
    pub mount_point: Option<PathBuf>,
    pub used_ratio: Option<f64>,
}

struct Sampler {
    system: System,
    paths: Vec<PathBuf>,
    last_cpu_refresh: Instant,
    cpu_usage: Option<f64>,
}

pub struct SysinfoProbe(Arc<Mutex<Sampler>>);

impl SysinfoProbe {
    pub fn new(paths: Vec<PathBuf>) -> Result<Self, sysinfo::Error> {
        let mut system = System::new()?;
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        // The baseline the first usage figure is measured against.
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        Ok(Self(Arc::new(Mutex::new(Sampler {
            system,
            paths,
            last_cpu_refresh: Instant::now(),
            cpu_usage: None,
        }))))
    }
}

impl SystemProbe for SysinfoProbe {
    fn sample(&self) -> BoxFuture<'_, SystemSample> {
        let sampler = Arc::clone(&self.0);
        async move {
            // statvfs on a hung network mount blocks: keep it off the runtime.
            tokio::task::spawn_blocking(move || match sampler.lock() {
                Ok(mut s) => s.sample(),
                Err(_) => SystemSample::default(),
            })
            .await
            .unwrap_or_default()
        }
        .boxed()
    }
}

impl Sampler {
    fn sample(&mut self) -> SystemSample {
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        // Usage is the delta between two refreshes; closer together than
        // the minimum it is noise, so keep the previous figure (rounds come
        // close together only when unit signals trigger them).
        if self.last_cpu_refresh.elapsed() >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            self.system
                .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
            self.last_cpu_refresh = Instant::now();
            self.cpu_usage = Some(f64::from(self.system.global_cpu_usage()) / 100.0);
        }
        let disks = self.paths.iter().map(|p| disk_for(p)).collect();
        let total = self.system.total_memory();
        let available = self.system.available_memory();
        SystemSample {
            disks,
            memory_used_ratio: ratio(total.saturating_sub(available), total),
            load1: System::load_average().ok().map(|l| l.one),
            cpus: self.system.cpus().len(),
            cpu_usage_ratio: self.cpu_usage,
        }
    }
}

fn ratio(used: u64, total: u64) -> Option<f64> {
    // Figures of bytes: f64 is exact far beyond any disk size.
    #[allow(clippy::cast_precision_loss)]
    (total > 0).then(|| used as f64 / total as f64)
}

/// The file system holding `path` (its nearest existing ancestor when it
/// does not exist yet), measured by `statvfs`, and its mount point: the
/// highest ancestor on the same device.
fn disk_for(path: &Path) -> DiskSample {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let used_ratio = nix::sys::statvfs::statvfs(existing).ok().and_then(|s| {
        let unit = s.fragment_size();
        let used = s
            .blocks()
            .saturating_sub(s.blocks_free())
            .saturating_mul(unit);
        let available = s.blocks_available().saturating_mul(unit);
        ratio(used, used.saturating_add(available))
    });
    DiskSample {
        path: path.to_owned(),
        mount_point: used_ratio.and(crate::fsutil::mount_point(existing)),
        used_ratio,
    }
}

/// Turns a sample into `disk:PATH`, `memory` and `load` components.
pub fn evaluate(sample: &SystemSample, checks: &ChecksConfig) -> Vec<ComponentHealth> {
    let mut out = Vec::with_capacity(sample.disks.len() + 2);
    let (deg, unh) = (
        checks.disk.degraded_percent.0,
        checks.disk.unhealthy_percent.0,
    );
    for d in &sample.disks {
        let name = format!("disk:{}", d.path.display());
        out.push(match (&d.mount_point, d.used_ratio) {
            (Some(m), Some(r)) => {
                let what = if m == &d.path {
                    format!("{} is {:.0}% full", d.path.display(), r * 100.0)
                } else {
                    format!(
                        "{} (on {}) is {:.0}% full",
                        d.path.display(),
                        m.display(),
                        r * 100.0
                    )
                };
                by_threshold(&name, r * 100.0, deg, unh, what)
            }
            _ => component(
                &name,
                HealthStatus::Degraded,
                Some(format!("no file system found for {}", d.path.display())),
            ),
        });
    }
    let mem = &checks.memory;
    out.push(match sample.memory_used_ratio {
        Some(r) => by_threshold(
            "memory",
            r * 100.0,
            mem.degraded_percent.0,
            mem.unhealthy_percent.0,
            format!("{:.0}% of memory in use", r * 100.0),
        ),
        None => component(
            "memory",
            HealthStatus::Degraded,
            Some("memory use unknown".into()),
        ),
    });
    out.push(match sample.load1 {
        #[allow(clippy::cast_precision_loss)]
        Some(l) if sample.cpus > 0 => {
            let per_cpu = l / sample.cpus as f64;
            by_threshold(
                "load",
                per_cpu,
                checks.load.degraded_per_cpu,
                checks.load.unhealthy_per_cpu,
                format!(
                    "1-minute load {l:.2} on {} CPUs ({per_cpu:.2} per CPU)",
                    sample.cpus
                ),
            )
        }
        _ => component(
            "load",
            HealthStatus::Degraded,
            Some("load average unknown".into()),
        ),
    });
    out
}

fn by_threshold(
    name: &str,
    value: f64,
    degraded: f64,
    unhealthy: f64,
    what: String,
) -> ComponentHealth {
    if value >= unhealthy {
        component(
            name,
            HealthStatus::Unhealthy,
            Some(format!("{what}, limit {unhealthy}")),
        )
    } else if value >= degraded {
        component(
            name,
            HealthStatus::Degraded,
            Some(format!("{what}, warning at {degraded}")),
        )
    } else {
        component(name, HealthStatus::Healthy, None)
    }
}

fn component(name: &str, status: HealthStatus, reason: Option<String>) -> ComponentHealth {
    ComponentHealth {
        name: name.to_owned(),
        status,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(disk: f64, mem: f64, load: f64) -> SystemSample {
        SystemSample {
            disks: vec![DiskSample {
                path: "/data".into(),
                mount_point: Some("/".into()),
                used_ratio: Some(disk),
            }],
            memory_used_ratio: Some(mem),
            load1: Some(load),
            cpus: 2,
            cpu_usage_ratio: Some(0.1),
        }
    }

    fn statuses(c: &[ComponentHealth]) -> Vec<(&str, HealthStatus)> {
        c.iter().map(|c| (c.name.as_str(), c.status)).collect()
    }

    #[test]
    fn thresholds_grade_each_figure() {
        let checks = ChecksConfig::default(); // 80/95 %, load 2/8 per CPU
        let ok = evaluate(&sample(0.5, 0.5, 1.0), &checks);
        assert_eq!(
            statuses(&ok),
            [
                ("disk:/data", HealthStatus::Healthy),
                ("memory", HealthStatus::Healthy),
                ("load", HealthStatus::Healthy)
            ]
        );
        let bad = evaluate(&sample(0.85, 0.97, 17.0), &checks);
        assert_eq!(
            statuses(&bad),
            [
                ("disk:/data", HealthStatus::Degraded),
                ("memory", HealthStatus::Unhealthy),
                ("load", HealthStatus::Unhealthy)
            ]
        );
        assert_eq!(
            bad[0].reason.as_deref(),
            Some("/data (on /) is 85% full, warning at 80")
        );
        assert_eq!(
            bad[2].reason.as_deref(),
            Some("1-minute load 17.00 on 2 CPUs (8.50 per CPU), limit 8")
        );
    }

    #[test]
    fn a_path_is_measured_on_its_own_file_system_as_df_counts() {
        // /proc is a file system of its own, with no blocks at all.
        let proc_fs = disk_for(Path::new("/proc/self"));
        assert_eq!(proc_fs.used_ratio, None);
        let d = disk_for(Path::new("/nonexistent-x/y"));
        assert_eq!(d.mount_point.as_deref(), Some(Path::new("/")));
        let s = nix::sys::statvfs::statvfs("/").map(|s| {
            let used = (s.blocks() - s.blocks_free()) as f64;
            used / (used + s.blocks_available() as f64)
        });
        let df_ratio = s.unwrap_or(-1.0);
        assert!(
            d.used_ratio.is_some_and(|r| (r - df_ratio).abs() < 0.01),
            "{d:?} vs df {df_ratio}"
        );
    }

    #[tokio::test]
    async fn the_real_host_gives_figures() -> Result<(), sysinfo::Error> {
        let probe = SysinfoProbe::new(vec!["/".into()])?;
        let s = probe.sample().await;
        assert!(
            s.memory_used_ratio
                .is_some_and(|r| (0.0..=1.0).contains(&r)),
            "{s:?}"
        );
        assert!(s.cpus > 0, "{s:?}");
        assert_eq!(s.disks.len(), 1);
        Ok(())
    }
}
