//! hostd's administrative PostgreSQL work, as the postgres superuser by
//! peer authentication (provisioning maps root to it). The `postgres` crate
//! is synchronous and runs its own runtime, so every call goes through
//! spawn_blocking, never on an async worker.

use std::time::Duration;

use crate::config::is_sql_identifier;

/// Used when `checks.postgres` is not set.
pub const DEFAULT_ADMIN_CONNINFO: &str = "host=/run/postgresql user=postgres dbname=postgres";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to PostgreSQL as its administrator")]
    Connect(#[source] postgres::Error),
    #[error("PostgreSQL refused to create role or database `{name}`")]
    Create {
        name: String,
        #[source]
        source: postgres::Error,
    },
    #[error("`{0}` is not a plain SQL name")]
    BadName(String),
    #[error("the PostgreSQL worker thread failed")]
    Worker(#[source] tokio::task::JoinError),
}

/// Creates role `name` (LOGIN, no password: peer authentication) and a
/// database `name` owned by it, when missing. Idempotent.
pub async fn ensure_app_database(conninfo: &str, name: &str) -> Result<(), PgError> {
    if !is_sql_identifier(name) {
        return Err(PgError::BadName(name.to_owned()));
    }
    let (conninfo, name) = (conninfo.to_owned(), name.to_owned());
    tokio::task::spawn_blocking(move || ensure_blocking(&conninfo, &name))
        .await
        .map_err(PgError::Worker)?
}

fn ensure_blocking(conninfo: &str, name: &str) -> Result<(), PgError> {
    let mut config: postgres::Config = conninfo.parse().map_err(PgError::Connect)?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let mut client = config.connect(postgres::NoTls).map_err(PgError::Connect)?;
    let create = |source| PgError::Create {
        name: name.to_owned(),
        source,
    };
    let role_exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .map_err(create)?
        .is_some();
    if !role_exists {
        tracing::info!(role = name, "creating PostgreSQL role");
        // Identifiers cannot be bound parameters; `name` passed
        // is_sql_identifier, so it needs no quoting.
        client
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .map_err(create)?;
    }
    let db_exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .map_err(create)?
        .is_some();
    if !db_exists {
        tracing::info!(database = name, "creating PostgreSQL database");
        client
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {name}"))
            .map_err(create)?;
    }
    Ok(())
}
