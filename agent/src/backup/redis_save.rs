//! A fresh RDB snapshot from the running Redis: BGSAVE, waited for until
//! LASTSAVE moves, and the path of the file it wrote.

use std::path::PathBuf;
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
}

fn failed(e: &redis::RedisError) -> RedisSaveError {
    RedisSaveError::Failed(
        e.code()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:?}", e.kind())),
    )
}

pub async fn fresh_rdb(
    address: &str,
    password: Option<&SecretValue>,
) -> Result<PathBuf, RedisSaveError> {
    let mut conn = connect(address, password).await?;
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
    live_rdb_path(&mut conn).await
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

async fn live_rdb_path(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<PathBuf, RedisSaveError> {
    let dir = config_get(conn, "dir").await?;
    Ok(PathBuf::from(dir).join(config_get(conn, "dbfilename").await?))
}

/// Where the running Redis loads its RDB from, and whether it loads an
/// append-only file instead (then a restored RDB would be ignored).
pub async fn load_source(
    address: &str,
    password: Option<&SecretValue>,
) -> Result<(PathBuf, bool), RedisSaveError> {
    let mut conn = connect(address, password).await?;
    let aof = config_get(&mut conn, "appendonly").await? == "yes";
    Ok((live_rdb_path(&mut conn).await?, aof))
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
        .map_err(|e| failed(&e))
}
