//! Each job's runs, one JSON document per line in
//! `<state_dir>/jobs/<name>.jsonl`, newest last; trimmed to the newest
//! [`KEEP`] when it grows to twice that.

use std::path::{Path, PathBuf};

use hostd_api::JobRun;
use serde::{Deserialize, Serialize};

use crate::state_file::{JsonLog, StateFileError};

const KEEP: usize = 200;

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

    fn log(&self, job: &str) -> JsonLog<Record> {
        JsonLog::new(self.dir.join(format!("{job}.jsonl")), "job records", 0o644)
    }

    /// Oldest first. An unreadable file reads as no runs (logged): the
    /// next run starts it again.
    pub fn read(&self, job: &str) -> Vec<Record> {
        self.log(job).read().unwrap_or_else(|e| {
            tracing::warn!("{}", hostd_api::error_chain(&e));
            Vec::new()
        })
    }

    pub fn last(&self, job: &str) -> Option<Record> {
        self.read(job).pop()
    }

    pub fn append(&self, job: &str, record: &Record) -> Result<(), StateFileError> {
        let log = self.log(job);
        log.append(record)?;
        let all = self.read(job);
        if all.len() >= 2 * KEEP {
            log.rewrite(&all[all.len() - KEEP..])?;
        }
        Ok(())
    }

    /// Records of jobs no longer configured.
    pub fn remove(&self, job: &str) {
        self.log(job).remove();
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
