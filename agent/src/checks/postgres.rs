//! PostgreSQL answers `SELECT 1`.
//!
//! The sync `postgres` crate owns a private runtime and panics on a tokio
//! worker, so the client lives on a dedicated thread. One long-lived
//! connection, reconnected only after it breaks: a check then costs one
//! round trip instead of a backend fork and an authentication per round, and
//! the server sees one steady idle session rather than connection churn.
//! The thread serves one request at a time through a rendezvous channel, so
//! a hung server can never pile up queued checks (or threads): the next
//! round reports "busy" until the stuck one returns.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use postgres::config::Host;
use tokio::sync::oneshot;

use super::{CheckError, Probe, find_io, io_kind};

type Reply = oneshot::Sender<Result<(), CheckError>>;

pub struct PostgresProbe {
    /// None when the connection string did not parse: every check says so.
    requests: Option<mpsc::SyncSender<Reply>>,
    /// Set while the thread works on a request: a check that finds it set
    /// reports Busy instead of queueing behind a hung one.
    busy: Arc<AtomicBool>,
    what: String,
    timeout: Duration,
}

impl PostgresProbe {
    /// Starts the client thread; it ends when the probe is dropped.
    pub fn spawn(conninfo: &str, timeout: Duration) -> Self {
        let Ok(mut config) = postgres::Config::from_str(conninfo) else {
            // The parse error may quote the string; say only which key is bad.
            tracing::error!("checks.postgres is not a valid connection string");
            return Self {
                requests: None,
                busy: Arc::default(),
                what: "PostgreSQL".into(),
                timeout,
            };
        };
        config.connect_timeout(timeout);
        let what = location(&config);
        let (tx, rx) = mpsc::sync_channel::<Reply>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let (thread_what, thread_busy) = (what.clone(), Arc::clone(&busy));
        let spawned = std::thread::Builder::new()
            .name("hostd-pg-check".into())
            .spawn(move || serve(&config, &thread_what, &rx, &thread_busy));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the PostgreSQL check thread");
        }
        Self {
            requests: Some(tx),
            busy,
            what,
            timeout,
        }
    }
}

impl Probe for PostgresProbe {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        async move {
            let Some(requests) = &self.requests else {
                return Err(CheckError::Failed {
                    what: self.what.clone(),
                    reason: "checks.postgres is not a valid connection string".into(),
                });
            };
            if self.busy.swap(true, Ordering::AcqRel) {
                return Err(CheckError::Busy {
                    what: self.what.clone(),
                });
            }
            let (tx, rx) = oneshot::channel();
            if let Err(e) = requests.try_send(tx) {
                self.busy.store(false, Ordering::Release);
                return Err(match e {
                    mpsc::TrySendError::Full(_) => CheckError::Busy {
                        what: self.what.clone(),
                    },
                    mpsc::TrySendError::Disconnected(_) => CheckError::Failed {
                        what: self.what.clone(),
                        reason: "the check thread has stopped".into(),
                    },
                });
            }
            // Connect timeout plus query: allow both, then give up waiting
            // (the thread finishes on its own and the next round sees Busy
            // until it does).
            match tokio::time::timeout(self.timeout * 2, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(CheckError::Failed {
                    what: self.what.clone(),
                    reason: "the check thread has stopped".into(),
                }),
                Err(_) => Err(CheckError::Timeout {
                    what: self.what.clone(),
                    after: self.timeout * 2,
                }),
            }
        }
        .boxed()
    }
}

fn serve(
    config: &postgres::Config,
    what: &str,
    requests: &mpsc::Receiver<Reply>,
    busy: &AtomicBool,
) {
    let mut client: Option<postgres::Client> = None;
    while let Ok(reply) = requests.recv() {
        let result = select_1(config, what, &mut client);
        busy.store(false, Ordering::Release);
        let _ = reply.send(result);
    }
}

fn select_1(
    config: &postgres::Config,
    what: &str,
    client: &mut Option<postgres::Client>,
) -> Result<(), CheckError> {
    let fail = |e: &postgres::Error| CheckError::Failed {
        what: what.to_owned(),
        reason: describe(e),
    };
    // A connection kept from an earlier round may have died with a server
    // restart; one retry on a fresh one tells that apart from a real outage.
    for attempt in 0..2 {
        let c = match client {
            Some(c) if !c.is_closed() => c,
            _ => client.insert(config.connect(postgres::NoTls).map_err(|e| fail(&e))?),
        };
        match c.simple_query("SELECT 1") {
            Ok(_) => return Ok(()),
            Err(e) => {
                let broken = c.is_closed();
                *client = None;
                if !broken || attempt == 1 {
                    return Err(fail(&e));
                }
            }
        }
    }
    Ok(())
}

/// Where the server is, from hosts and ports only (never user, database or
/// password): `PostgreSQL at /run/postgresql`, `PostgreSQL at db:5432`.
fn location(config: &postgres::Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    if hosts.is_empty() {
        "PostgreSQL".into()
    } else {
        format!("PostgreSQL at {}", hosts.join(","))
    }
}

/// The error kind: the SQLSTATE for a server error (its message may quote
/// role or database names), the I/O kind for a connection error.
fn describe(e: &postgres::Error) -> String {
    if let Some(code) = e.code() {
        let meaning = match code.code() {
            "28P01" | "28000" => " (authentication failed)",
            "3D000" => " (database does not exist)",
            "57P03" => " (server is starting up or shutting down)",
            "53300" => " (too many connections)",
            _ => "",
        };
        return format!("server error SQLSTATE {}{meaning}", code.code());
    }
    if let Some(io) = find_io(e) {
        return io_kind(io);
    }
    if e.is_closed() {
        return "connection closed".into();
    }
    "connection failed".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_never_shows_user_database_or_password() -> Result<(), postgres::Error> {
        let c = postgres::Config::from_str(
            "host=/run/postgresql user=postgres password=hunter2 dbname=secretdb",
        )?;
        assert_eq!(location(&c), "PostgreSQL at /run/postgresql");
        let c = postgres::Config::from_str("postgresql://u:hunter2@db.internal:6432/x")?;
        assert_eq!(location(&c), "PostgreSQL at db.internal:6432");
        Ok(())
    }

    #[tokio::test]
    async fn refused_connection_is_reported_without_the_conninfo() -> std::io::Result<()> {
        // A socket directory with no server in it: connect fails at once.
        let dir = tempfile::tempdir()?;
        let conninfo = format!(
            "host={} user=postgres password=hunter2 dbname=postgres",
            dir.path().display()
        );
        let probe = PostgresProbe::spawn(&conninfo, Duration::from_secs(2));
        let err = probe.check().await.err().map(|e| e.to_string());
        let text = err.unwrap_or_default();
        assert!(text.starts_with("PostgreSQL at /"), "{text}");
        assert!(text.contains("socket not found"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("user="),
            "{text}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_unparsable_conninfo_is_reported_without_echoing_it() {
        let probe = PostgresProbe::spawn(
            "host='unterminated password=hunter2",
            Duration::from_secs(1),
        );
        let text = probe
            .check()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            text,
            "PostgreSQL: checks.postgres is not a valid connection string"
        );
    }
}
