//! Each job's runs, one JSON document per line in
//! `<state_dir>/jobs/<name>.jsonl`, newest last; trimmed to the newest
//! [`KEEP`] when it grows to twice that.

use std::io::Write;
use std::path::{Path, PathBuf};

use hostd_api::JobRun;
use serde::{Deserialize, Serialize};

const KEEP: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("cannot write the run record {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A run and what identifies it: systemd's start time of the main process
/// (microseconds), so one run is recorded once however often it is seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub start_usec: u64,
    #[serde(flatten)]
    pub run: JobRun,
}

#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("jobs"),
        }
    }

    fn path(&self, job: &str) -> PathBuf {
        self.dir.join(format!("{job}.jsonl"))
    }

    /// Oldest first. Unreadable lines (a torn write at a crash) are skipped.
    pub fn read(&self, job: &str) -> Vec<Record> {
        std::fs::read_to_string(self.path(job))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn last(&self, job: &str) -> Option<Record> {
        self.read(job).pop()
    }

    pub fn append(&self, job: &str, record: &Record) -> Result<(), RecordsError> {
        let path = self.path(job);
        let err = |source| RecordsError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let mut line = serde_json::to_vec(record).map_err(|e| err(e.into()))?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        f.write_all(&line).map_err(err)?;
        let all = self.read(job);
        if all.len() >= 2 * KEEP {
            let mut text = Vec::new();
            for r in &all[all.len() - KEEP..] {
                text.extend(serde_json::to_vec(r).map_err(|e| err(e.into()))?);
                text.push(b'\n');
            }
            crate::fsutil::write_atomically(&path, &text, 0o644).map_err(err)?;
        }
        Ok(())
    }

    /// Records of jobs no longer configured.
    pub fn remove(&self, job: &str) {
        let _ = std::fs::remove_file(self.path(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64, result: &str) -> Record {
        Record {
            start_usec: n,
            run: JobRun {
                started: format!("t{n}"),
                finished: Some(format!("t{n}")),
                result: result.into(),
                exit_code: Some(i32::from(result != "success")),
                trigger: "timer".into(),
            },
        }
    }

    #[test]
    fn runs_come_back_in_order_and_the_file_stays_bounded() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let r = Records::new(dir.path());
        assert!(r.last("cleanup").is_none());
        for n in 0..(2 * KEEP as u64) {
            r.append(
                "cleanup",
                &record(n, if n % 2 == 0 { "success" } else { "exit-code" }),
            )?;
        }
        let all = r.read("cleanup");
        assert_eq!(all.len(), KEEP);
        assert_eq!(all.last().map(|x| x.start_usec), Some(2 * KEEP as u64 - 1));
        assert_eq!(
            r.last("cleanup"),
            Some(record(2 * KEEP as u64 - 1, "exit-code"))
        );
        assert!(r.read("other").is_empty());
        Ok(())
    }
}
