//! Post-migration verification, the guide's verify-after-migration: the version matches,
//! every applied migration's `.verify.sql` returns true, each manifest check returns
//! true, and row-level security is enabled with at least one policy on each listed table.

use sqlx::AssertSqlSafe;
use sqlx::PgConnection;

use super::{PgError, explain, versions};
use crate::manifest::DatabaseConfig;
use crate::migrations::{Catalog, Migration, Script, Version, split};

/// One check and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub checks: Vec<CheckResult>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn failures(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    fn push(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        self.checks.push(CheckResult {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }
}

/// Run every check. Failures are results, not errors; errors are for "could not ask".
pub async fn verify(
    conn: &mut PgConnection,
    client: &str,
    catalog: &Catalog,
    database: &DatabaseConfig,
    expected: Option<&Version>,
) -> Result<VerifyReport, PgError> {
    let mut report = VerifyReport::default();
    let rows = versions::latest_rows(conn, client).await?;
    let current = versions::current(&rows);
    if let Some(expected) = expected {
        let shown = current
            .as_ref()
            .map_or("(none)".to_owned(), ToString::to_string);
        report.push(
            "schema version",
            current.as_ref() == Some(expected),
            format!("expected {expected}, found {shown}"),
        );
    }
    for row in rows
        .iter()
        .filter(|r| r.status == versions::Status::Applied.as_str())
    {
        let Some(m) = catalog.get(&row.version) else {
            continue;
        };
        let Some(verify) = &m.verify else { continue };
        let name = format!("{} verify", m.version);
        match run_verify_file(conn, client, m, verify).await {
            Ok(()) => report.push(name, true, verify.path.display().to_string()),
            Err(err) => report.push(name, false, err.to_string()),
        }
    }
    for check in &database.checks {
        match sqlx::query_scalar::<_, Option<bool>>(AssertSqlSafe(check.sql.as_str()))
            .fetch_one(&mut *conn)
            .await
        {
            Ok(Some(true)) => report.push(&check.name, true, "true"),
            Ok(other) => report.push(
                &check.name,
                false,
                format!("returned {}, expected true", explain::boolean(other)),
            ),
            Err(err) => report.push(
                &check.name,
                false,
                format!("query failed: {}", explain::explain(&err)),
            ),
        }
    }
    for table in &database.rls_tables {
        let enabled: Option<bool> = sqlx::query_scalar(
            "SELECT c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relname = $1 AND n.nspname = current_schema()",
        )
        .bind(table)
        .fetch_optional(&mut *conn)
        .await
        .map_err(PgError::query(client, "reading RLS status"))?;
        let policies: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_policies WHERE tablename = $1 AND schemaname = current_schema()")
            .bind(table)
            .fetch_one(&mut *conn)
            .await
            .map_err(PgError::query(client, "counting policies"))?;
        let (passed, detail) = match enabled {
            None => (false, "table does not exist".to_owned()),
            Some(false) => (false, "row level security is disabled".to_owned()),
            Some(true) if policies == 0 => (
                false,
                "row level security is enabled but no policy exists".to_owned(),
            ),
            Some(true) => (
                true,
                format!(
                    "enabled, {policies} polic{}",
                    if policies == 1 { "y" } else { "ies" }
                ),
            ),
        };
        report.push(format!("RLS on {table}"), passed, detail);
    }
    Ok(report)
}

/// Every statement of a verify file must return true.
pub(crate) async fn run_verify_file(
    conn: &mut PgConnection,
    client: &str,
    m: &Migration,
    script: &Script,
) -> Result<(), PgError> {
    for statement in split::split(&script.sql) {
        let fail = |message: String| PgError::Migration {
            client: client.to_owned(),
            version: m.version.clone(),
            file: script.path.clone(),
            line: statement.line,
            message,
            progress: None,
        };
        match sqlx::query_scalar::<_, Option<bool>>(AssertSqlSafe(statement.sql.as_str()))
            .fetch_one(&mut *conn)
            .await
        {
            Ok(Some(true)) => {}
            Ok(other) => {
                return Err(fail(format!(
                    "verify returned {}, expected true",
                    explain::boolean(other)
                )));
            }
            Err(err) => return Err(fail(explain::explain(&err))),
        }
    }
    Ok(())
}
