//! `secrets.redis_password` → Redis's `requirepass`, live and across
//! restarts: `CONFIG SET` on the running server, and an include file
//! (`include /etc/redis/hostd-auth.conf` in redis.conf, set up by
//! provisioning) that Redis reads when it starts. The file is 0640
//! root:redis; the password never appears in a process's arguments.
//!
//! Clients already authenticated stay connected when the password changes;
//! new connections need the new one, which is why app services are
//! restarted with the new `redis_url` right after.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::set::SecretValue;
use crate::fsutil::write_if_changed_for_group;

pub const AUTH_FILE: &str = "/etc/redis/hostd-auth.conf";
/// The group Redis runs as on Debian and Amazon Linux.
const REDIS_GROUP: &str = "redis";
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RedisAuthError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("there is no `{REDIS_GROUP}` group to let Redis read {AUTH_FILE}")]
    NoGroup,
    #[error(
        "Redis at {addr} refuses every password hostd knows (the new one, the previous one, none); \
         set it by hand or clear requirepass"
    )]
    Refused { addr: String },
    #[error("Redis at {addr} did not take the new password ({code})")]
    Set { addr: String, code: String },
}

/// What [`apply`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The server already required this password.
    Unchanged,
    /// CONFIG SET changed it on the running server.
    Set,
    /// Nothing answered: the file applies when Redis starts.
    NotRunning,
}

/// The include file's text: every byte but ASCII letters and digits as a
/// `\xHH` escape inside double quotes, which Redis's config parser
/// (sdssplitargs) decodes, so no value can break out of the line.
pub fn include_file(password: &str) -> String {
    let mut escaped = String::with_capacity(password.len() * 4);
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() {
            escaped.push(char::from(b));
        } else {
            escaped.push_str(&format!("\\x{b:02x}"));
        }
    }
    format!(
        "# Written by hostd from secrets.redis_password. Do not edit.\nrequirepass \"{escaped}\"\n"
    )
}

/// Makes `address`'s server require `new`: writes `file`, then logs in
/// with the new, the previous or no password and sets it where needed.
pub async fn apply(
    address: &str,
    file: &Path,
    new: &SecretValue,
    previous: Option<&SecretValue>,
) -> Result<Applied, RedisAuthError> {
    let gid = nix::unistd::Group::from_name(REDIS_GROUP)
        .ok()
        .flatten()
        .ok_or(RedisAuthError::NoGroup)?
        .gid;
    write_if_changed_for_group(
        file,
        include_file(new.expose()).as_bytes(),
        0o640,
        gid.as_raw(),
    )
    .map_err(|source| RedisAuthError::Write {
        path: file.to_owned(),
        source,
    })?;

    let Ok(client) = redis::Client::open(address) else {
        // Config validation parsed it already.
        return Ok(Applied::NotRunning);
    };
    let addr = client.get_connection_info().addr().to_string();
    let candidates = [Some(new), previous, None];
    for (i, password) in candidates.into_iter().enumerate() {
        let mut conn = match login(&client, password.map(SecretValue::expose)).await {
            Login::Refused => continue,
            Login::Down => return Ok(Applied::NotRunning),
            Login::In(_) if i == 0 => return Ok(Applied::Unchanged),
            Login::In(conn) => conn,
        };
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET").arg("requirepass").arg(new.expose());
        let set = cmd.query_async::<()>(&mut conn);
        return match tokio::time::timeout(TIMEOUT, set).await {
            Ok(Ok(())) => Ok(Applied::Set),
            Ok(Err(e)) => Err(RedisAuthError::Set {
                addr,
                code: e.code().unwrap_or("I/O error").to_owned(),
            }),
            Err(_) => Err(RedisAuthError::Set {
                addr,
                code: "timed out".into(),
            }),
        };
    }
    Err(RedisAuthError::Refused { addr })
}

enum Login {
    In(redis::aio::MultiplexedConnection),
    Refused,
    Down,
}

/// A client for `client`'s server that logs in with `password`, or as
/// `client` does when None. Every hostd connection to Redis goes through
/// this, so the password is applied one way everywhere.
pub fn with_password(
    client: &redis::Client,
    password: Option<&str>,
) -> redis::RedisResult<redis::Client> {
    let mut info = client.get_connection_info().clone();
    if let Some(p) = password {
        let settings = info.redis_settings().clone().set_password(p);
        info = info.set_redis_settings(settings);
    }
    redis::Client::open(info)
}

/// `client` is the configured address, which carries no password
/// (config validation sees to that): logging in without one uses it as is.
async fn login(client: &redis::Client, password: Option<&str>) -> Login {
    let Ok(client) = with_password(client, password) else {
        return Login::Down;
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    // The handshake AUTHs when a password is set; PING proves a server
    // without one lets us in.
    let attempt = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok::<_, redis::RedisError>(conn)
    };
    match tokio::time::timeout(TIMEOUT * 2, attempt).await {
        Ok(Ok(conn)) => Login::In(conn),
        Ok(Err(e)) if e.is_connection_refusal() || e.is_io_error() => Login::Down,
        Ok(Err(_)) => Login::Refused,
        Err(_) => Login::Down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_include_file_escapes_every_byte_that_could_break_the_line() {
        let text = include_file("a\"b\\c\nd é$");
        assert_eq!(
            text.lines().nth(1),
            Some("requirepass \"a\\x22b\\x5cc\\x0ad\\x20\\xc3\\xa9\\x24\"")
        );
        assert_eq!(text.lines().count(), 2);
    }
}
