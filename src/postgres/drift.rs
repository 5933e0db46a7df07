//! The schema's fingerprint: one catalog query describes tables, columns, types,
//! defaults, constraints, indexes, RLS flags and policies, functions, triggers and
//! extensions (steward's own tables left out), and `steward_schema` keeps the description
//! recorded after each run that changed the schema, so drift can be shown as a diff.
//!
//! The description is compared inside Postgres by its md5: observing a schema that has not
//! drifted costs no extra round trip and no extra bytes (see `observe.rs`).

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::{PgConnection, Row as _};

use super::PgError;
use crate::migrations::Version;
use crate::plan::{Drift, SchemaDescription, drift};

/// One statement returning the schema's description as a sorted JSON array of
/// `[kind, name, definition]`. Supabase's own schemas and extension members are left
/// out: the platform changes them, not the client's migrations.
pub(crate) const DESCRIBE: &str = include_str!("sql/describe_schema.sql");

const ENSURE: &str = "CREATE TABLE IF NOT EXISTS steward_schema (
    id bigserial PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    version text,
    reason text NOT NULL,
    actor text NOT NULL,
    hash text NOT NULL,
    description jsonb NOT NULL
)";

/// References kept per database: enough history to see the last few runs.
const KEPT: i64 = 20;

/// Why a reference was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Migrate,
    Restore,
    Adopt,
    /// `steward drift accept`: a person reviewed the live schema.
    Accept,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Migrate => "migrate",
            Reason::Restore => "restore",
            Reason::Adopt => "adopt",
            Reason::Accept => "accept",
        }
    }
}

/// Record the live schema as the reference, at `version`, by `actor`. One round trip:
/// the description never leaves the server.
pub async fn record(
    conn: &mut PgConnection,
    client: &str,
    version: Option<&Version>,
    reason: Reason,
    actor: &str,
) -> Result<(), PgError> {
    let sql = format!(
        "{ENSURE};
         INSERT INTO steward_schema (version, reason, actor, hash, description)
         SELECT {version}, {reason}, {actor}, md5(d::text), d FROM ({DESCRIBE}) AS live(d);
         DELETE FROM steward_schema WHERE id <= (SELECT max(id) - {KEPT} FROM steward_schema);",
        version = version.map_or("NULL".to_owned(), |v| quote(v.as_str())),
        reason = quote(reason.as_str()),
        actor = quote(actor),
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(PgError::query(client, "recording the schema's fingerprint"))?;
    Ok(())
}

/// The live schema's description.
pub async fn describe(conn: &mut PgConnection, client: &str) -> Result<SchemaDescription, PgError> {
    let json: String = sqlx::query_scalar(AssertSqlSafe(format!("SELECT ({DESCRIBE})::text")))
        .fetch_one(&mut *conn)
        .await
        .map_err(PgError::query(client, "describing the schema"))?;
    parse(client, &json)
}

/// A read-only look at one client for `drift --fleet`: its schema version and schema.
pub async fn look(
    client: &str,
    url: &crate::secret::Secret,
) -> Result<(Option<Version>, SchemaDescription), PgError> {
    let mut conn = super::connect(client, url, super::Access::ReadOnly).await?;
    let result = async {
        let rows = super::versions::latest_rows(&mut conn, client).await?;
        let schema = describe(&mut conn, client).await?;
        Ok((super::versions::current(&rows), schema))
    }
    .await;
    super::close(conn).await;
    result
}

/// The part of the observation batch that compares the live schema with the reference:
/// one row `('schema', version, actor, detail, recorded_at)` whose `detail` is NULL when
/// they match, else `[reference, live]`. Only valid when `steward_schema` exists.
///
/// The reference is the newest one recorded at the live schema version: a version change
/// written to `system_versions` (the guide's manual rollback, say) explains the schema
/// moving, and the ordinary version diff converges it. Drift is a schema that moved while
/// its version stayed put. With no reference at this version there is nothing to compare.
pub(crate) fn observation_part(has_versions: bool) -> String {
    let current = if has_versions {
        "(SELECT max(version::text COLLATE \"C\") FROM (SELECT DISTINCT ON (version) version, status FROM system_versions
           ORDER BY version, applied_at DESC) AS latest WHERE status = 'applied')"
    } else {
        "NULL"
    };
    format!(
        "(WITH reference AS (SELECT version, actor, hash, description, recorded_at FROM steward_schema
                             WHERE version IS NOT DISTINCT FROM {current} ORDER BY id DESC LIMIT 1),
               live AS (SELECT ({DESCRIBE}) AS d)
          SELECT 'schema'::text, reference.version, reference.actor,
                 CASE WHEN md5(live.d::text) <> reference.hash THEN jsonb_build_array(reference.description, live.d)::text END,
                 reference.recorded_at
          FROM reference, live)"
    )
}

/// Turn the observation row into drift, if the schema moved.
pub(crate) fn drift_from_row(
    client: &str,
    version: Option<String>,
    actor: Option<String>,
    detail: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> Result<Option<Drift>, PgError> {
    let Some(detail) = detail else {
        return Ok(None);
    };
    let (reference, live): (SchemaDescription, SchemaDescription) = serde_json::from_str(detail)
        .map_err(|e| {
            PgError::refused(
                client,
                format!("steward_schema holds a description steward cannot read: {e}"),
            )
        })?;
    Ok(Some(Drift {
        recorded_version: version,
        recorded_by: actor.unwrap_or_default(),
        recorded_at: at.unwrap_or_default(),
        changes: drift::diff(&reference, &live),
    })
    .filter(|d| !d.changes.is_empty()))
}

/// The newest reference, if one was recorded: (version, actor, recorded at, description).
pub async fn reference(
    conn: &mut PgConnection,
    client: &str,
) -> Result<Option<(Option<String>, String, DateTime<Utc>, SchemaDescription)>, PgError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('steward_schema') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(PgError::query(client, "looking for steward_schema"))?;
    if !exists {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT version, actor, recorded_at, description::text AS description FROM steward_schema ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(PgError::query(client, "reading steward_schema"))?;
    row.map(|row| {
        let description: String = row.get("description");
        Ok((
            row.get("version"),
            row.get("actor"),
            row.get("recorded_at"),
            parse(client, &description)?,
        ))
    })
    .transpose()
}

fn parse(client: &str, json: &str) -> Result<SchemaDescription, PgError> {
    serde_json::from_str(json).map_err(|e| {
        PgError::refused(
            client,
            format!("the schema description is not what steward expects: {e}"),
        )
    })
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
