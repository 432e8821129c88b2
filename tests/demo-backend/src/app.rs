use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Mutex;

/// The version of a binary started outside a release directory.
pub const BUILD_VERSION: &str = match option_env!("DEMO_BACKEND_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// The release's version: `dir/VERSION` (trimmed), else [`BUILD_VERSION`].
/// Read from the release rather than compiled in, so one binary can be
/// deployed as v1 and as v2; `serve` passes the working directory, which
/// systemd sets to the release (`WorkingDirectory=`).
pub fn release_version(dir: &std::path::Path) -> String {
    let path = dir.join("VERSION");
    match std::fs::read_to_string(&path) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        Ok(_) => BUILD_VERSION.to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BUILD_VERSION.to_owned(),
        // Still serve: a wrong version shows in /version and the deploy
        // that expects another one fails there, with this warning to read.
        Err(e) => {
            tracing::warn!(
                "cannot read {}: {e}; reporting {BUILD_VERSION}",
                path.display()
            );
            BUILD_VERSION.to_owned()
        }
    }
}

/// Each dependency check gets this long: /health must answer fast even when
/// a dependency hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Settings {
    database_url: String,
    redis_url: String,
    listen: String,
    /// A private Unix socket serving the same routes, so the supervisor can
    /// ask this instance in particular (the TCP socket is shared).
    health_socket: Option<String>,
}

impl Settings {
    pub fn from_env() -> Self {
        let var = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.to_owned());
        Self {
            database_url: credential("database_url")
                .unwrap_or_else(|| var("DATABASE_URL", "host=/run/postgresql dbname=postgres")),
            redis_url: credential("redis_url")
                .unwrap_or_else(|| var("REDIS_URL", "redis://127.0.0.1:6379/")),
            listen: var("LISTEN_ADDR", "127.0.0.1:8080"),
            health_socket: std::env::var("HEALTH_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }
}

/// A systemd credential (`LoadCredential=` in a drop-in hostd writes):
/// preferred over the environment, which other processes of the same user
/// can read in /proc. The file holds the exact value, no newline added.
fn credential(name: &str) -> Option<String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    std::fs::read_to_string(std::path::Path::new(&dir).join(name)).ok()
}

struct AppState {
    version: String,
    database_url: String,
    /// Connected lazily and again after a drop: a PostgreSQL restart must
    /// not need an API restart. Client methods take &self, so an Arc is a
    /// handle requests can share.
    db: Mutex<Option<Arc<tokio_postgres::Client>>>,
    redis: redis::Client,
    redis_conn: Mutex<Option<redis::aio::ConnectionManager>>,
}

type Shared = Arc<AppState>;

impl AppState {
    async fn db(&self) -> Result<Arc<tokio_postgres::Client>> {
        let mut guard = self.db.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let (client, conn) = tokio::time::timeout(
            CHECK_TIMEOUT,
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls),
        )
        .await
        .context("PostgreSQL did not answer in time")?
        .context("cannot connect to PostgreSQL")?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!("PostgreSQL connection closed: {e}");
            }
        });
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS notes (id bigserial PRIMARY KEY, body text NOT NULL, \
                 created_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .context("cannot create the notes table")?;
        let client = Arc::new(client);
        *guard = Some(Arc::clone(&client));
        Ok(client)
    }

    async fn redis(&self) -> Result<redis::aio::ConnectionManager> {
        let mut guard = self.redis_conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let conn = tokio::time::timeout(CHECK_TIMEOUT, self.redis.get_connection_manager())
            .await
            .context("Redis did not answer in time")?
            .context("cannot connect to Redis")?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    async fn check(&self) -> Result<()> {
        if cfg!(feature = "broken") {
            anyhow::bail!("this is the deliberately broken build");
        }
        let db = self.db().await?;
        tokio::time::timeout(CHECK_TIMEOUT, db.simple_query("SELECT 1"))
            .await
            .context("PostgreSQL did not answer SELECT 1 in time")?
            .context("PostgreSQL SELECT 1 failed")?;
        let mut redis = self.redis().await?;
        let pong: String =
            tokio::time::timeout(CHECK_TIMEOUT, redis::cmd("PING").query_async(&mut redis))
                .await
                .context("Redis did not answer PING in time")?
                .context("Redis PING failed")?;
        anyhow::ensure!(pong == "PONG", "Redis answered PING with {pong:?}");
        Ok(())
    }
}

fn error(st: &AppState, code: StatusCode, e: &anyhow::Error) -> Response {
    (
        code,
        Json(json!({ "error": format!("{e:#}"), "version": st.version })),
    )
        .into_response()
}

async fn health(State(st): State<Shared>) -> Response {
    match st.check().await {
        Ok(()) => Json(json!({ "status": "ok", "version": st.version })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "error", "reason": format!("{e:#}"), "version": st.version })),
        )
            .into_response(),
    }
}

async fn version(State(st): State<Shared>) -> String {
    format!("{}\n", st.version)
}

async fn add_note(State(st): State<Shared>, body: String) -> Response {
    let result = async {
        let db = st.db().await?;
        let row = db
            .query_one(
                "INSERT INTO notes (body) VALUES ($1) RETURNING id",
                &[&body],
            )
            .await
            .context("insert failed")?;
        let id: i64 = row.get(0);
        let mut redis = st.redis().await?;
        let count: i64 = redis::cmd("INCR")
            .arg("notes:created")
            .query_async(&mut redis)
            .await
            .context("Redis INCR failed")?;
        Ok::<_, anyhow::Error>(json!({ "id": id, "created_total": count, "version": st.version }))
    }
    .await;
    match result {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => error(&st, StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

async fn list_notes(State(st): State<Shared>) -> Response {
    let result = async {
        let db = st.db().await?;
        let rows = db
            .query("SELECT id, body FROM notes ORDER BY id DESC LIMIT 20", &[])
            .await
            .context("select failed")?;
        let notes: Vec<_> = rows
            .iter()
            .map(|r| json!({ "id": r.get::<_, i64>(0), "body": r.get::<_, String>(1) }))
            .collect();
        Ok::<_, anyhow::Error>(json!({ "notes": notes, "version": st.version }))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(&st, StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

fn router(st: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/notes", get(list_notes).post(add_note))
        .with_state(st)
}

/// The socket systemd passed us (socket activation), else our own.
async fn listener(addr: &str) -> Result<tokio::net::TcpListener> {
    let mut fds = listenfd::ListenFd::from_env();
    if let Some(std_listener) = fds.take_tcp_listener(0).context("bad LISTEN_FDS socket")? {
        std_listener.set_nonblocking(true)?;
        tracing::info!("using the socket passed by systemd");
        return Ok(tokio::net::TcpListener::from_std(std_listener)?);
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

pub async fn serve(settings: Settings) -> Result<()> {
    let listener = listener(&settings.listen).await?;
    let state = Arc::new(AppState {
        version: release_version(std::path::Path::new(".")),
        database_url: settings.database_url,
        db: Mutex::new(None),
        redis: redis::Client::open(settings.redis_url.as_str()).context("invalid REDIS_URL")?,
        redis_conn: Mutex::new(None),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let private = match &settings.health_socket {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let unix = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("cannot listen on {path}"))?;
            let mut stop = stop_rx.clone();
            let app = router(Arc::clone(&state));
            Some(tokio::spawn(async move {
                axum::serve(unix, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            }))
        }
        None => None,
    };
    tracing::info!(version = %state.version, addr = %listener.local_addr()?, "demo-backend serving");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let (draining_tx, draining_rx) = tokio::sync::watch::channel(false);
    let listener = crate::drain::Draining::new(listener, draining_rx);
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                // Without a handler SIGTERM kills us outright; never "shut
                // down" because the handler is missing.
                Err(e) => {
                    tracing::error!("cannot handle SIGTERM: {e}");
                    std::future::pending::<()>().await;
                }
            }
            tracing::info!("SIGTERM: no new connections; finishing the accepted ones");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            draining_tx.send_replace(true);
            tokio::time::sleep(crate::drain::LAME_DUCK).await;
        })
        .await
        .context("server failed");
    stop_tx.send_replace(true);
    if let Some(task) = private {
        let _ = task.await;
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(database_url: &str) -> Result<AppState> {
        Ok(AppState {
            version: BUILD_VERSION.to_owned(),
            database_url: database_url.to_owned(),
            db: Mutex::new(None),
            redis: redis::Client::open("redis://127.0.0.1:1/")?,
            redis_conn: Mutex::new(None),
        })
    }

    /// The broken build fails its health check before touching anything:
    /// the rollback drills rely on it failing every time, for that reason.
    #[cfg(feature = "broken")]
    #[tokio::test]
    async fn the_broken_build_fails_its_health_check() -> Result<()> {
        let err = state("host=/nonexistent")?.check().await.err();
        let text = err.map(|e| format!("{e:#}")).unwrap_or_default();
        assert_eq!(text, "this is the deliberately broken build");
        Ok(())
    }

    /// A normal build's health check really asks PostgreSQL (and fails when
    /// it cannot reach it), rather than answering ok blindly.
    #[cfg(not(feature = "broken"))]
    #[tokio::test]
    async fn a_normal_build_checks_postgres() -> Result<()> {
        let err = state("host=/nonexistent/socket-dir dbname=x connect_timeout=1")?
            .check()
            .await
            .err();
        let text = err.map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(text.contains("PostgreSQL"), "{text}");
        Ok(())
    }

    #[test]
    fn the_build_version_is_chosen_at_build_time() {
        let expected = option_env!("DEMO_BACKEND_VERSION").unwrap_or(env!("CARGO_PKG_VERSION"));
        assert_eq!(BUILD_VERSION, expected);
    }

    /// A release's VERSION file wins; without one (or with a blank one) the
    /// binary still answers with the version it was built as.
    #[test]
    fn the_release_version_comes_from_the_version_file() -> Result<()> {
        // No tempfile in this crate's dependencies: a directory of our own,
        // removed whatever the assertions do.
        struct Dir(std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir =
            Dir(std::env::temp_dir()
                .join(format!("demo-backend-version-test-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0)?;
        assert_eq!(release_version(&dir.0), BUILD_VERSION);
        std::fs::write(dir.0.join("VERSION"), " \n")?;
        assert_eq!(release_version(&dir.0), BUILD_VERSION);
        std::fs::write(dir.0.join("VERSION"), "v2\n")?;
        assert_eq!(release_version(&dir.0), "v2");
        Ok(())
    }
}
