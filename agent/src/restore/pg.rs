//! PostgreSQL's part of a restore, synchronous (a blocking thread): the
//! dump restored into a staging database beside the live one, then
//! swapped in by two renames in one transaction. Until that commit the
//! live database is untouched, so a restore that fails or is killed
//! changes nothing; after it, the old database is kept (renamed) until the
//! whole restore has succeeded.
//!
//! Database names here are plain SQL identifiers (checked at config load),
//! so they need no quoting.

use rustic_core::repofile::Node;
use rustic_core::{IndexedFullStatus, Repository};

use crate::backup::readback;
use crate::backup::runner::PgTarget;
use crate::postgres::{admin_connect, quote_ident, server_message};

const STAGING_PREFIX: &str = "hostd_restore_";
const PREVIOUS_PREFIX: &str = "hostd_pre_restore_";
/// PostgreSQL truncates identifiers beyond this.
const MAX_IDENTIFIER: usize = 63;
/// The database hostd connects to for administration.
const ADMIN_DB: &str = "postgres";

#[derive(Debug, thiserror::Error)]
pub enum PgRestoreError {
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
    #[error(
        "{previous} is left from an earlier restore (database {db} as it was before that restore); \
         drop it (`DROP DATABASE {previous}`) or rename it, then restore again"
    )]
    PreviousLeft { db: String, previous: String },
}

fn failed(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> PgRestoreError {
    let what = what.into();
    move |e| PgRestoreError::Failed {
        what,
        detail: server_message(&e),
    }
}

fn named(prefix: &str, db: &str) -> String {
    let mut name = format!("{prefix}{db}");
    name.truncate(MAX_IDENTIFIER);
    name
}

pub fn staging_name(db: &str) -> String {
    named(STAGING_PREFIX, db)
}

pub fn previous_name(db: &str) -> String {
    named(PREVIOUS_PREFIX, db)
}

fn exists(c: &mut postgres::Client, db: &str) -> Result<bool, PgRestoreError> {
    c.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .map(|r| r.is_some())
        .map_err(failed("reading pg_database"))
}

fn admin(conninfo: &str) -> Result<postgres::Client, PgRestoreError> {
    admin_connect(conninfo, ADMIN_DB).map_err(failed("connecting to PostgreSQL"))
}

/// Before anything is stopped: a previous copy left by an earlier restore
/// would be in the way of the swap, and is the operator's to remove.
pub fn preflight(conninfo: &str, databases: &[String]) -> Result<(), PgRestoreError> {
    let mut c = admin(conninfo)?;
    for db in databases {
        let previous = previous_name(db);
        if exists(&mut c, &previous)? {
            return Err(PgRestoreError::PreviousLeft {
                db: db.clone(),
                previous,
            });
        }
    }
    Ok(())
}

/// Where PostgreSQL keeps its databases: a staging database is written
/// there.
pub fn data_directory(conninfo: &str) -> Result<std::path::PathBuf, PgRestoreError> {
    let what = "reading PostgreSQL's data_directory";
    let row = admin(conninfo)?
        .query_one("SELECT current_setting('data_directory')", &[])
        .map_err(failed(what))?;
    let dir: String = row.try_get(0).map_err(failed(what))?;
    Ok(dir.into())
}

/// Restores `node` (the dump of `db`) into `db`'s staging database, owned
/// like `db` (by the role of its name, when there is one). Returns the
/// bytes read. A failure drops the staging database again.
pub fn stage(
    repo: &Repository<IndexedFullStatus>,
    node: &Node,
    pg: &PgTarget,
    conninfo: &str,
    db: &str,
    progress: impl FnMut(u64),
) -> Result<u64, PgRestoreError> {
    let staging = staging_name(db);
    let mut c = admin(conninfo)?;
    let role = c
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&db])
        .map_err(failed("reading pg_roles"))?
        .is_some();
    let owner = if role {
        format!(" OWNER {}", quote_ident(db))
    } else {
        String::new()
    };
    // Separate statements: CREATE DATABASE refuses to run inside the
    // implicit transaction of a multi-statement query.
    c.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {}",
        quote_ident(&staging)
    ))
    .and_then(|()| c.batch_execute(&format!("CREATE DATABASE {}{owner}", quote_ident(&staging))))
    .map_err(failed(format!("creating the staging database {staging}")))?;
    let mut restore = pg.command("pg_restore");
    // Owners and grants as they were: the roles exist on this host.
    restore.args(["--exit-on-error", "--dbname", &staging]);
    let file = format!("{db}.dump");
    match readback::into_command(repo, node, &file, restore, progress) {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let _ = drop_database(&mut c, &staging);
            Err(PgRestoreError::Failed {
                what: format!("restoring {file} into {staging}"),
                detail: e.to_string(),
            })
        }
    }
}

/// The staging database becomes `db`; the live one becomes its previous
/// copy. Sessions still on `db` are ended first (the app is stopped; this
/// catches psql left open). Atomic: both renames or neither.
pub fn swap(conninfo: &str, db: &str) -> Result<(), PgRestoreError> {
    let (staging, previous) = (staging_name(db), previous_name(db));
    let mut c = admin(conninfo)?;
    let live = exists(&mut c, db)?;
    if live {
        close(&mut c, db)?;
    }
    let renames = if live {
        format!(
            "BEGIN; ALTER DATABASE {} RENAME TO {}; ALTER DATABASE {} RENAME TO {}; COMMIT",
            quote_ident(db),
            quote_ident(&previous),
            quote_ident(&staging),
            quote_ident(db)
        )
    } else {
        format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&staging),
            quote_ident(db)
        )
    };
    if let Err(e) = c.batch_execute(&renames) {
        let _ = c.batch_execute("ROLLBACK");
        if live {
            reopen(&mut c, db);
        }
        return Err(failed(format!("swapping {staging} in as {db}"))(e));
    }
    Ok(())
}

/// Undoes [`swap`]: the restored `db` becomes the staging database again
/// and the previous copy `db`, open to connections. Nothing to do while
/// the staging database exists: it was never swapped in. Atomic too.
pub fn unswap(conninfo: &str, db: &str) -> Result<(), PgRestoreError> {
    let (staging, previous) = (staging_name(db), previous_name(db));
    let mut c = admin(conninfo)?;
    if exists(&mut c, &staging)? {
        return Ok(());
    }
    let (live, before) = (exists(&mut c, db)?, exists(&mut c, &previous)?);
    if live {
        close(&mut c, db)?;
    }
    let mut renames = String::from("BEGIN;");
    if live {
        renames += &format!(
            " ALTER DATABASE {} RENAME TO {};",
            quote_ident(db),
            quote_ident(&staging)
        );
    }
    if before {
        renames += &format!(
            " ALTER DATABASE {} RENAME TO {};",
            quote_ident(&previous),
            quote_ident(db)
        );
    }
    if let Err(e) = c.batch_execute(&(renames + " COMMIT")) {
        let _ = c.batch_execute("ROLLBACK");
        if live {
            reopen(&mut c, db);
        }
        return Err(failed(format!("swapping {db} back from {previous}"))(e));
    }
    // The previous copy was closed to connections by the swap.
    if before {
        reopen(&mut c, db);
    }
    Ok(())
}

/// No new sessions on `db`, and the ones there ended (the app is stopped;
/// this catches a psql left open, and hostd's own health check).
fn close(c: &mut postgres::Client, db: &str) -> Result<(), PgRestoreError> {
    c.batch_execute(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
        quote_ident(db)
    ))
    .map_err(failed(format!("closing {db} to new connections")))?;
    let ended = c
        .execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db],
        )
        .map_err(failed(format!("ending sessions on {db}")));
    if let Err(e) = ended {
        reopen(c, db);
        return Err(e);
    }
    Ok(())
}

fn reopen(c: &mut postgres::Client, db: &str) {
    if let Err(e) = c.batch_execute(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        quote_ident(db)
    )) {
        tracing::error!(
            database = db,
            "cannot reopen {db} to connections: {}",
            server_message(&e)
        );
    }
}

fn drop_database(c: &mut postgres::Client, name: &str) -> Result<(), PgRestoreError> {
    c.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    ))
    .map_err(failed(format!("dropping {name}")))
}

/// After the whole restore succeeded: the old copy goes.
pub fn drop_previous(conninfo: &str, db: &str) -> Result<(), PgRestoreError> {
    drop_database(&mut admin(conninfo)?, &previous_name(db))
}

/// After an interrupted restore: a staging database was never live.
pub fn drop_staging(conninfo: &str, db: &str) -> Result<(), PgRestoreError> {
    drop_database(&mut admin(conninfo)?, &staging_name(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_within_postgres_limits() {
        assert_eq!(staging_name("api"), "hostd_restore_api");
        assert_eq!(previous_name("api"), "hostd_pre_restore_api");
        let long = "a".repeat(63);
        assert_eq!(previous_name(&long).len(), MAX_IDENTIFIER);
        assert!(previous_name(&long).starts_with(PREVIOUS_PREFIX));
    }
}
