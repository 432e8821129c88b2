//! The restore drill: the newest dump of each database restored from the
//! repository into a scratch database with `pg_restore`, checked, and
//! dropped. A backup that cannot be restored is a failed backup.
//!
//! The default check: every table that has rows in the live database has
//! rows in the restored one. Configured queries must each return true.

use rustic_core::RepositoryOptions;

use super::runner::PgTarget;
use super::{S3Backend, open_or_init};

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{0}")]
    Failed(String),
}

fn fail(what: &str, e: impl std::fmt::Display) -> DrillError {
    DrillError::Failed(format!("{what}: {e}"))
}

pub struct DrillPlan {
    pub storage: S3Backend,
    pub password: String,
    pub options: RepositoryOptions,
    pub host: String,
    pub pg: PgTarget,
    /// libpq conninfo of the administrator, without a database name.
    pub admin: String,
    pub databases: Vec<String>,
    pub queries: Vec<String>,
}

#[derive(Debug, Default)]
pub struct DrillOutput {
    pub snapshot: Option<String>,
    pub checks_passed: u32,
}

pub fn drill(plan: &DrillPlan) -> Result<DrillOutput, DrillError> {
    let storage = super::read_ahead::ReadAhead::new(plan.storage.clone());
    let repo = open_or_init(storage, &plan.password, &plan.options)
        .map_err(|e| fail("opening the repository", hostd_api::error_chain(&e)))?;
    let repo = repo
        .to_indexed()
        .map_err(|e| fail("reading the repository index", e.display_log()))?;
    let mut out = DrillOutput::default();
    for db in &plan.databases {
        let tag = format!("db={db}");
        let newest = repo
            .get_matching_snapshots(|s| {
                s.hostname == plan.host && s.tags.contains("kind=postgres") && s.tags.contains(&tag)
            })
            .map_err(|e| fail("listing snapshots", e.display_log()))?
            .into_iter()
            .max_by(|a, b| a.time.cmp(&b.time))
            .ok_or_else(|| DrillError::Failed(format!("no dump of {db} to restore")))?;
        let node = repo
            .node_from_snapshot_and_path(&newest, &format!("{db}.dump"))
            .map_err(|e| fail(&format!("finding {db}.dump"), e.display_log()))?;
        let scratch = format!("hostd_drill_{db}");
        let mut admin = connect(&plan.admin, "postgres")?;
        // Separate statements: CREATE DATABASE refuses to run inside the
        // implicit transaction of a multi-statement query.
        let quoted = crate::postgres::quote_ident(&scratch);
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted}"))
            .and_then(|()| admin.batch_execute(&format!("CREATE DATABASE {quoted}")))
            .map_err(|e| fail("creating the scratch database", pg_text(&e)))?;
        let result = restore_and_check(&repo, &node, plan, db, &scratch);
        let dropped = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {quoted}"));
        out.checks_passed += result?;
        dropped.map_err(|e| fail("dropping the scratch database", pg_text(&e)))?;
        out.snapshot = Some(newest.id.to_hex().to_string());
    }
    Ok(out)
}

fn restore_and_check(
    repo: &rustic_core::Repository<rustic_core::IndexedFullStatus>,
    node: &rustic_core::repofile::Node,
    plan: &DrillPlan,
    db: &str,
    scratch: &str,
) -> Result<u32, DrillError> {
    let mut restore = plan.pg.command("pg_restore");
    restore.args([
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        "--dbname",
        scratch,
    ]);
    super::readback::into_command(repo, node, &format!("{db}.dump"), restore, |_| {})
        .map_err(|e| fail(&format!("restoring {db}"), e))?;

    let mut live = connect(&plan.admin, db)?;
    let mut restored = connect(&plan.admin, scratch)?;
    let mut passed = 0;
    for table in tables(&mut restored)? {
        let has_rows = |c: &mut postgres::Client| -> Result<bool, DrillError> {
            c.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
                .map(|r| r.get::<_, bool>(0))
                .map_err(|e| fail(&format!("counting rows of {table}"), pg_text(&e)))
        };
        if has_rows(&mut live)? && !has_rows(&mut restored)? {
            return Err(DrillError::Failed(format!(
                "{table} has rows in {db} but none in the restored dump"
            )));
        }
        passed += 1;
    }
    for q in &plan.queries {
        let ok = restored
            .query_one(q.as_str(), &[])
            .map(|r| r.try_get::<_, bool>(0).unwrap_or(false))
            .map_err(|e| fail(&format!("drill query `{q}`"), pg_text(&e)))?;
        if !ok {
            return Err(DrillError::Failed(format!(
                "drill query `{q}` returned false"
            )));
        }
        passed += 1;
    }
    Ok(passed)
}

/// Quoted `schema.table` names of the ordinary tables outside the system
/// schemas.
fn tables(c: &mut postgres::Client) -> Result<Vec<String>, DrillError> {
    let rows = c
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            &[],
        )
        .map_err(|e| fail("listing tables", pg_text(&e)))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn pg_text(e: &postgres::Error) -> String {
    crate::postgres::server_message(e)
}

fn connect(admin: &str, db: &str) -> Result<postgres::Client, DrillError> {
    crate::postgres::admin_connect(admin, db)
        .map_err(|e| fail(&format!("connecting to {db}"), pg_text(&e)))
}
