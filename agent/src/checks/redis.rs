//! Redis answers PING.
//!
//! One multiplexed connection kept between rounds and dropped on any error,
//! so the next round reconnects. Not a `ConnectionManager`: it reconnects
//! on its own schedule with retries, which would put connection attempts
//! outside the check interval; here every attempt is a round.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use tokio::sync::{Mutex, watch};

use super::{CheckError, Probe, find_io, io_kind};
use crate::secrets::{SecretValue, SecretsState};

pub struct RedisProbe {
    client: Option<redis::Client>,
    /// The connection and the password it logged in with.
    conn: Mutex<Option<(MultiplexedConnection, Option<SecretValue>)>>,
    what: String,
    timeout: Duration,
    /// Where `secrets.redis_password` is read each round, when configured:
    /// a rotated password makes the next round log in again with it.
    password: Option<watch::Receiver<SecretsState>>,
}

impl RedisProbe {
    pub fn new(url: &str, timeout: Duration) -> Self {
        Self::with_password(url, timeout, None)
    }

    pub fn with_password(
        url: &str,
        timeout: Duration,
        password: Option<watch::Receiver<SecretsState>>,
    ) -> Self {
        let client = redis::Client::open(url).ok();
        if client.is_none() {
            // The URL may carry a password: name the key, not the value.
            tracing::error!("checks.redis is not a valid Redis URL");
        }
        let what = client.as_ref().map_or_else(
            || "Redis".to_owned(),
            |c| format!("Redis at {}", c.get_connection_info().addr()),
        );
        Self {
            client,
            conn: Mutex::new(None),
            what,
            timeout,
            password,
        }
    }

    async fn ping(&self, client: &redis::Client) -> Result<(), redis::RedisError> {
        // Rounds never overlap, so this lock is never contended; it only
        // makes the cached connection mutable behind `&self`.
        let mut slot = self.conn.lock().await;
        let password = self
            .password
            .as_ref()
            .and_then(|rx| rx.borrow().wired.redis_password.clone());
        if slot.as_ref().is_some_and(|(_, used)| *used != password) {
            *slot = None;
        }
        let conn = match slot.as_mut() {
            Some((c, _)) => c,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let expose = password.as_ref().map(SecretValue::expose);
                let c = crate::secrets::redis_auth::with_password(client, expose)?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                &mut slot.insert((c, password)).0
            }
        };
        let result = redis::cmd("PING").query_async::<String>(conn).await;
        if result.is_err() {
            *slot = None;
        }
        result.map(|_| ())
    }
}

impl Probe for RedisProbe {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        async move {
            let Some(client) = &self.client else {
                return Err(CheckError::Failed {
                    what: self.what.clone(),
                    reason: "checks.redis is not a valid Redis URL".into(),
                });
            };
            // Connect and response timeouts each bound a step; this bounds
            // the whole check.
            match tokio::time::timeout(self.timeout * 2, self.ping(client)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(CheckError::Failed {
                    what: self.what.clone(),
                    reason: describe(&e),
                }),
                Err(_) => {
                    // The cancelled ping may have left the connection mid-reply.
                    *self.conn.lock().await = None;
                    Err(CheckError::Timeout {
                        what: self.what.clone(),
                        after: self.timeout * 2,
                    })
                }
            }
        }
        .boxed()
    }
}

/// The error kind only: a server error's code (`NOAUTH`, `LOADING`), or the
/// I/O kind; never the error text, which may quote the URL.
fn describe(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        return "connection refused".into();
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    if let Some(io) = find_io(e) {
        return io_kind(io);
    }
    if let Some(code) = e.code() {
        return format!("server error {code}");
    }
    format!("{:?}", e.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_host_and_port_never_the_password() {
        let p = RedisProbe::new("redis://:hunter2@127.0.0.1:6390/0", Duration::from_secs(1));
        assert_eq!(p.what, "Redis at 127.0.0.1:6390");
    }

    #[tokio::test]
    async fn nothing_listening_is_connection_refused() -> std::io::Result<()> {
        // Bind then drop: the port is very likely free and refuses at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let p = RedisProbe::new(
            &format!("redis://:hunter2@127.0.0.1:{port}/"),
            Duration::from_secs(2),
        );
        let text = p
            .check()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            text,
            format!("Redis at 127.0.0.1:{port}: connection refused")
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_answering_server_is_healthy_and_the_connection_is_reused() -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&accepts);
        // A minimal RESP server: +PONG to each command (each `*` array
        // header) received, enough for the client's handshake and PING.
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 512];
                    while let Ok(n) = s.read(&mut buf).await {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let commands = text.split("\r\n").filter(|l| l.starts_with('*')).count();
                        if n == 0 || s.write_all(&b"+PONG\r\n".repeat(commands)).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let p = RedisProbe::new(
            &format!("redis://127.0.0.1:{port}/"),
            Duration::from_secs(2),
        );
        for _ in 0..3 {
            assert_eq!(p.check().await, Ok(()));
        }
        assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
        Ok(())
    }
}
