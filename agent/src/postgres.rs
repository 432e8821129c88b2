//! hostd's administrative PostgreSQL work, as the postgres superuser by
//! peer authentication (provisioning maps root to it). The `postgres` crate
//! is synchronous and runs its own runtime, so every call goes through
//! spawn_blocking, never on an async worker.

use std::time::Duration;

use crate::config::is_sql_identifier;
use crate::secrets::SecretValue;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `name` as a quoted SQL identifier. Every name hostd puts into SQL is a
/// checked identifier already; quoting keeps it one whatever it holds.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A blocking connection as the administrator (`conninfo`, whatever
/// database it names) to database `db`. Callers are on a blocking thread.
pub fn admin_connect(conninfo: &str, db: &str) -> Result<postgres::Client, postgres::Error> {
    let mut config: postgres::Config = conninfo.parse()?;
    config.dbname(db);
    config.connect_timeout(CONNECT_TIMEOUT);
    config.connect(postgres::NoTls)
}

/// The server's own message: `postgres::Error`'s Display is only "db
/// error" for those.
pub fn server_message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to PostgreSQL as its administrator")]
    Connect(#[source] postgres::Error),
    #[error("PostgreSQL refused to create or alter role or database `{name}`")]
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

/// Creates role `name` (LOGIN) and a database `name` owned by it, when
/// missing, and sets the role's password when one is given (the role is
/// reached by peer authentication on the local socket regardless).
/// Idempotent.
pub async fn ensure_app_database(
    conninfo: &str,
    name: &str,
    password: Option<&SecretValue>,
) -> Result<(), PgError> {
    if !is_sql_identifier(name) {
        return Err(PgError::BadName(name.to_owned()));
    }
    // Hashed here: PostgreSQL stores a SCRAM verifier given as one as it
    // is, so the plaintext never reaches the server, its logs or
    // pg_stat_activity.
    let verifier =
        password.map(|p| postgres_protocol::password::scram_sha_256(p.expose().as_bytes()));
    let (conninfo, name) = (conninfo.to_owned(), name.to_owned());
    tokio::task::spawn_blocking(move || ensure_blocking(&conninfo, &name, verifier.as_deref()))
        .await
        .map_err(PgError::Worker)?
}

fn ensure_blocking(conninfo: &str, name: &str, verifier: Option<&str>) -> Result<(), PgError> {
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
    // Identifiers cannot be bound parameters: quoted.
    let ident = quote_ident(name);
    if !role_exists {
        tracing::info!(role = name, "creating PostgreSQL role");
        client
            .batch_execute(&format!("CREATE ROLE {ident} LOGIN"))
            .map_err(create)?;
    }
    if let Some(verifier) = verifier {
        // The verifier is base64 and `$:` only: safe inside quotes. Kept out
        // of the statement log anyway: it can be attacked offline.
        client
            .batch_execute(&format!(
                "SET log_statement = 'none'; SET log_min_duration_statement = -1; ALTER ROLE {ident} PASSWORD '{verifier}'"
            ))
            .map_err(create)?;
    }
    let db_exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .map_err(create)?
        .is_some();
    if !db_exists {
        tracing::info!(database = name, "creating PostgreSQL database");
        client
            .batch_execute(&format!("CREATE DATABASE {ident} OWNER {ident}"))
            .map_err(create)?;
    }
    Ok(())
}
