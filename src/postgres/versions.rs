//! `system_versions`, kept compatible with the guide: it may already exist with only
//! `version`, `applied_at`, `status` and several rows per version (history). steward adds
//! its own columns when missing and only ever appends rows; the current version is the
//! highest version whose latest row is `applied`.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::{PgConnection, Row as _};

use super::PgError;
use crate::migrations::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Applied,
    RolledBack,
    Failed,
    InProgress,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Applied => "applied",
            Status::RolledBack => "rolled_back",
            Status::Failed => "failed",
            Status::InProgress => "in_progress",
        }
    }
}

/// The latest row of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub version: Version,
    pub status: String,
    pub checksum: Option<String>,
    pub applied_at: DateTime<Utc>,
}

const ENSURE: &str = r#"
CREATE TABLE IF NOT EXISTS system_versions (
    version     text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    status      text        NOT NULL DEFAULT 'applied'
);
ALTER TABLE system_versions
    ADD COLUMN IF NOT EXISTS name           text,
    ADD COLUMN IF NOT EXISTS checksum       text,
    ADD COLUMN IF NOT EXISTS execution_ms   bigint,
    ADD COLUMN IF NOT EXISTS applied_by     text,
    ADD COLUMN IF NOT EXISTS fleet_revision text;
"#;

/// Create the table when absent and add steward's columns when missing. Idempotent, and
/// it never touches existing rows.
pub async fn ensure_table(conn: &mut PgConnection, client: &str) -> Result<(), PgError> {
    sqlx::raw_sql(ENSURE)
        .execute(&mut *conn)
        .await
        .map_err(PgError::query(client, "preparing system_versions"))?;
    Ok(())
}

pub(crate) async fn table_exists(conn: &mut PgConnection, client: &str) -> Result<bool, PgError> {
    sqlx::query_scalar("SELECT to_regclass('system_versions') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(PgError::query(client, "looking for system_versions"))
}

/// The latest row per version (one round trip). Versions steward cannot parse (a hand
/// process may have written anything) are reported as an error, not skipped.
pub async fn latest_rows(conn: &mut PgConnection, client: &str) -> Result<Vec<Row>, PgError> {
    if !table_exists(conn, client).await? {
        return Ok(Vec::new());
    }
    let has_checksum: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('system_versions') AND attname = 'checksum' AND NOT attisdropped)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(PgError::query(client, "reading system_versions columns"))?;
    let checksum = if has_checksum {
        "checksum"
    } else {
        "NULL::text AS checksum"
    };
    let sql = format!(
        "SELECT DISTINCT ON (version) version::text AS version, status::text AS status, {checksum}, applied_at
         FROM system_versions ORDER BY version, applied_at DESC"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(PgError::query(client, "reading system_versions"))?;
    rows.into_iter()
        .map(|row| {
            let text: String = row.get("version");
            let version = text
                .parse::<Version>()
                .map_err(|err| PgError::refused(client, format!("system_versions holds {err}")))?;
            Ok(Row {
                version,
                status: row.get("status"),
                checksum: row.get("checksum"),
                applied_at: row.get("applied_at"),
            })
        })
        .collect()
}

/// The highest version whose latest row is `applied`.
/// The rows the guards look at: applied versions with their recorded checksums, and the
/// versions a crash left `failed` or `in_progress`.
#[allow(clippy::type_complexity)]
pub fn split(rows: &[Row]) -> (Vec<(Version, Option<String>)>, Vec<(Version, String)>) {
    let applied = rows
        .iter()
        .filter(|r| r.status == Status::Applied.as_str())
        .map(|r| (r.version.clone(), r.checksum.clone()))
        .collect();
    let unfinished = rows
        .iter()
        .filter(|r| r.status == Status::Failed.as_str() || r.status == Status::InProgress.as_str())
        .map(|r| (r.version.clone(), r.status.clone()))
        .collect();
    (applied, unfinished)
}

pub fn current(rows: &[Row]) -> Option<Version> {
    rows.iter()
        .filter(|r| r.status == Status::Applied.as_str())
        .map(|r| r.version.clone())
        .max()
}

/// One bookkeeping row. `clock_timestamp()`, not `now()`: rows written in one
/// transaction must still order by time.
pub struct NewRow<'a> {
    pub version: &'a Version,
    pub name: Option<&'a str>,
    pub checksum: Option<&'a str>,
    pub status: Status,
    pub execution_ms: Option<i64>,
    pub actor: &'a str,
    pub revision: Option<&'a str>,
}

pub async fn insert(conn: &mut PgConnection, client: &str, row: NewRow<'_>) -> Result<(), PgError> {
    sqlx::query(
        "INSERT INTO system_versions (version, applied_at, status, name, checksum, execution_ms, applied_by, fleet_revision)
         VALUES ($1, clock_timestamp(), $2, $3, $4, $5, $6, $7)",
    )
    .bind(row.version.as_str())
    .bind(row.status.as_str())
    .bind(row.name)
    .bind(row.checksum)
    .bind(row.execution_ms)
    .bind(row.actor)
    .bind(row.revision)
    .execute(&mut *conn)
    .await
    .map_err(PgError::query(client, format!("recording {} as {}", row.version, row.status.as_str())))?;
    Ok(())
}
