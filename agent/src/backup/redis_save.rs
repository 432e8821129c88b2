//! A fresh RDB snapshot from the running Redis: BGSAVE, waited for until
//! LASTSAVE moves. Where the file is comes from hostd.toml
//! (`backup.redis_rdb`); Redis only confirms it, since any client holding
//! its password can move it (`CONFIG SET dir`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secrets::SecretValue;

/// A large dataset on a small instance can take minutes to fork and write.
const SAVE_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
pub enum RedisSaveError {
    /// The error kind only: Redis's messages can quote the URL.
    #[error("Redis refused or failed: {0}")]
    Failed(String),
    #[error("Redis did not finish BGSAVE within {} s", SAVE_TIMEOUT.as_secs())]
    Timeout,
    /// The host and port only: the address may carry a password.
    #[error("cannot reach Redis at {at}: {reason}")]
    Unreachable { at: String, reason: String },
    #[error(
        "Redis keeps its RDB at {}, not at backup.redis_rdb ({}); hostd reads and replaces only the configured file",
        .reported.display(),
        .configured.display()
    )]
    Elsewhere {
        reported: PathBuf,
        configured: PathBuf,
    },
}

fn failed(e: &redis::RedisError) -> RedisSaveError {
    RedisSaveError::Failed(
        e.code()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:?}", e.kind())),
    )
}

/// Saves now; `rdb` (the configured file) then holds the snapshot.
pub async fn fresh_rdb(
    address: &str,
    password: Option<&SecretValue>,
    rdb: &Path,
) -> Result<(), RedisSaveError> {
    let mut conn = connect(address, password).await?;
    // Before saving: a file written elsewhere is not one hostd reads.
    confirm(&mut conn, rdb).await?;
    let before: i64 = redis::cmd("LASTSAVE")
        .query_async(&mut conn)
        .await
        .map_err(|e| failed(&e))?;
    // "already in progress" is fine: waiting for LASTSAVE to move covers it.
    if let Err(e) = redis::cmd("BGSAVE").query_async::<()>(&mut conn).await
        && !e.to_string().contains("in progress")
    {
        return Err(failed(&e));
    }
    let waited = tokio::time::timeout(SAVE_TIMEOUT, async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now: i64 = redis::cmd("LASTSAVE")
                .query_async(&mut conn)
                .await
                .map_err(|e| failed(&e))?;
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut conn)
                .await
                .map_err(|e| failed(&e))?;
            let busy = info.contains("rdb_bgsave_in_progress:1");
            if now > before && !busy {
                if info.contains("rdb_last_bgsave_status:ok") {
                    return Ok(());
                }
                return Err(RedisSaveError::Failed(
                    "rdb_last_bgsave_status is not ok".into(),
                ));
            }
        }
    })
    .await
    .map_err(|_| RedisSaveError::Timeout)?;
    waited?;
    // And after: the location could have moved while Redis saved.
    confirm(&mut conn, rdb).await
}

async fn config_get(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> Result<String, RedisSaveError> {
    let (_, value): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| failed(&e))?;
    Ok(value)
}

/// Ok when the running Redis writes and loads `rdb`.
async fn confirm(
    conn: &mut redis::aio::MultiplexedConnection,
    rdb: &Path,
) -> Result<(), RedisSaveError> {
    let dir = config_get(conn, "dir").await?;
    let reported = PathBuf::from(dir).join(config_get(conn, "dbfilename").await?);
    if reported != rdb {
        return Err(RedisSaveError::Elsewhere {
            reported,
            configured: rdb.to_owned(),
        });
    }
    Ok(())
}

/// Whether the running Redis loads an append-only file instead of its
/// RDB (a restored RDB would then be ignored); refused when Redis does
/// not use `rdb`.
pub async fn loads_append_only(
    address: &str,
    password: Option<&SecretValue>,
    rdb: &Path,
) -> Result<bool, RedisSaveError> {
    let mut conn = connect(address, password).await?;
    confirm(&mut conn, rdb).await?;
    Ok(config_get(&mut conn, "appendonly").await? == "yes")
}

async fn connect(
    address: &str,
    password: Option<&SecretValue>,
) -> Result<redis::aio::MultiplexedConnection, RedisSaveError> {
    let client = redis::Client::open(address).map_err(|e| failed(&e))?;
    crate::secrets::redis_auth::with_password(&client, password.map(SecretValue::expose))
        .map_err(|e| failed(&e))?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| match e.kind() {
            redis::ErrorKind::Io => RedisSaveError::Unreachable {
                at: host_and_port(address),
                reason: if e.is_connection_refusal() {
                    "connection refused".to_owned()
                } else if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    crate::checks::find_io(&e)
                        .map_or_else(|| "connection failed".to_owned(), crate::checks::io_kind)
                },
            },
            _ => failed(&e),
        })
}

/// `host:port` of a Redis URL, without its scheme, user or password.
fn host_and_port(address: &str) -> String {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, hp)| hp)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::host_and_port;

    #[test]
    fn the_address_shown_has_no_password() {
        assert_eq!(
            host_and_port("redis://:pw@10.0.0.5:6380/2"),
            "10.0.0.5:6380"
        );
        assert_eq!(host_and_port("redis://127.0.0.1:6379/"), "127.0.0.1:6379");
    }
}
