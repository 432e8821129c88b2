//! `[backup]`: where the restic-format repository lives, what goes into it,
//! when, how long it is kept and how it is proved restorable. The password
//! is `secrets.backup_password`, never a key here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::secrets::{AbsolutePath, AwsRegion, EndpointUrl};
use super::values::HumanDuration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    pub bucket: BucketName,
    /// The name this host's backups go by: `{hostname}` in `prefix` and the
    /// snapshots' host. Unset: the system hostname. A stable name lets a
    /// replacement instance (another hostname) find the backups.
    #[serde(default)]
    pub host: Option<HostName>,
    /// At start, when first-boot preparation found /data empty (and left
    /// its marker), restore the latest backup before anything else.
    #[serde(default)]
    pub restore_on_empty: bool,
    /// Key prefix of this host's repository; `{hostname}` is replaced.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// None: the SDK's chain (AWS_REGION, profile, then IMDS on EC2).
    #[serde(default)]
    pub region: Option<AwsRegion>,
    #[serde(default)]
    pub endpoint_url: Option<EndpointUrl>,
    /// Daily, at this UTC time (`HH:MM`), plus a random delay up to `jitter`.
    #[serde(default = "default_at")]
    pub at: DailyTime,
    #[serde(default = "default_jitter")]
    pub jitter: HumanDuration,
    /// Databases to dump. Unset: every `services.*.database`.
    #[serde(default)]
    pub databases: Option<Vec<String>>,
    /// Back up Redis's RDB snapshot (at `checks.redis`, default local).
    #[serde(default = "yes")]
    pub redis: bool,
    /// The `[services]` entry of the Redis server: a restore stops it to
    /// put the RDB file in place, and starts it again.
    #[serde(default = "default_redis_service")]
    pub redis_service: String,
    /// Redis's RDB file: what a backup reads and a restore replaces. Taken
    /// from here, never from Redis (`CONFIG SET dir` is open to any client
    /// with its password); hostd refuses when Redis says otherwise.
    #[serde(default = "default_redis_rdb")]
    pub redis_rdb: AbsolutePath,
    /// Directories or files backed up as they are.
    #[serde(default)]
    pub paths: Vec<AbsolutePath>,
    #[serde(default)]
    pub keep: KeepPolicy,
    /// Run `check` (reading `check_read_subset` of the data) when the last
    /// one is older than this.
    #[serde(default = "default_check_interval")]
    pub check_interval: HumanDuration,
    #[serde(default = "default_read_subset")]
    pub check_read_subset: String,
    /// Restore drill after each backup.
    #[serde(default = "yes")]
    pub drill: bool,
    /// SQL run against the drill's scratch database; each must return one
    /// row whose first column is true. Besides the default check.
    #[serde(default)]
    pub drill_queries: Vec<String>,
    /// /health is degraded when the last successful backup or drill is
    /// older than this.
    #[serde(default = "default_max_age")]
    pub max_age: HumanDuration,
    /// rustic's local cache of repository metadata.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: AbsolutePath,
}

fn default_redis_service() -> String {
    "redis".to_owned()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepPolicy {
    #[serde(default = "default_daily")]
    pub daily: u32,
    #[serde(default = "default_weekly")]
    pub weekly: u32,
    #[serde(default = "default_monthly")]
    pub monthly: u32,
}

impl Default for KeepPolicy {
    fn default() -> Self {
        Self {
            daily: default_daily(),
            weekly: default_weekly(),
            monthly: default_monthly(),
        }
    }
}

impl BackupConfig {
    /// The repository's prefix for this host.
    pub fn prefix_for(&self, hostname: &str) -> String {
        self.prefix.replace("{hostname}", hostname)
    }
}

fn yes() -> bool {
    true
}
fn default_prefix() -> String {
    "hostd/{hostname}".to_owned()
}
fn default_at() -> DailyTime {
    DailyTime(3 * 60)
}
fn default_jitter() -> HumanDuration {
    HumanDuration(Duration::from_secs(30 * 60))
}
fn default_check_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(7 * 24 * 3600))
}
fn default_read_subset() -> String {
    "5%".to_owned()
}
fn default_max_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(26 * 3600))
}
fn default_redis_rdb() -> AbsolutePath {
    AbsolutePath(PathBuf::from("/data/redis/dump.rdb"))
}
fn default_cache_dir() -> AbsolutePath {
    AbsolutePath(PathBuf::from("/var/cache/hostd/restic"))
}
fn default_daily() -> u32 {
    7
}
fn default_weekly() -> u32 {
    4
}
fn default_monthly() -> u32 {
    6
}

/// `HH:MM`, minutes after midnight UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DailyTime(pub u32);

impl TryFrom<String> for DailyTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let parsed = s.split_once(':').and_then(|(h, m)| {
            let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
            (h < 24 && m < 60 && s.len() == 5).then_some(h * 60 + m)
        });
        parsed
            .map(Self)
            .ok_or_else(|| format!("`{s}` is not a time of day like `03:00` (UTC)"))
    }
}

/// A host name for backups: 1–63 of a-z A-Z 0-9 . _ - (it becomes part of
/// an S3 key and a snapshot's host).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostName(String);

impl TryFrom<String> for HostName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = (1..=63).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Self(s))
        } else {
            Err(format!(
                "`{s}` is not a host name (1 to 63 of a-z, A-Z, 0-9, `.`, `_`, `-`)"
            ))
        }
    }
}

impl HostName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An S3 bucket name: 3–63 of a-z 0-9 . -
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BucketName(String);

impl TryFrom<String> for BucketName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = (3..=63).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        if ok {
            Ok(Self(s))
        } else {
            Err(format!(
                "`{s}` is not an S3 bucket name (3 to 63 of a-z, 0-9, `.`, `-`)"
            ))
        }
    }
}

impl BucketName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert!(HostName::try_from("api-prod.eu_1".to_owned()).is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(64)] {
            assert!(HostName::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_of_day() {
        assert_eq!(DailyTime::try_from("03:30".to_owned()), Ok(DailyTime(210)));
        for bad in ["3:30", "24:00", "03:60", "0330", "03:3x"] {
            assert!(DailyTime::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
