//! Update records: the guide's "maintain records of update date/time, migration versions
//! applied, configuration changes, issues encountered, rollback events", kept in each
//! client's own database (`steward_events`) so they travel with its backups.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};

use crate::plan::Failure;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read or write steward_events: {}", crate::postgres::explain::explain(.0))]
    Database(#[from] sqlx::Error),
    /// The run goes on without a connection to the client's database (the traffic
    /// switches when the database is down).
    #[error("cannot write steward_events: the client's database could not be reached")]
    Unreachable,
}

/// What happened to one step, or to the whole apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An apply began (step is "apply").
    Started,
    Succeeded,
    Failed,
    /// A completed step was undone after a later failure.
    Undone,
    /// The whole apply ended rolled back.
    RolledBack,
    /// The update is complete (the guide's "update completed successfully").
    Completed,
    /// `steward retry`: the Failed state is cleared.
    Retry,
    /// An operator action outside a plan (rollback, restore, repair).
    Manual,
    /// Written before a step starts, with the step and its undo: an intent with no
    /// outcome after it means the process died during the step.
    Intent,
    /// A step that kept failing for a transient reason: the run stopped there, nothing
    /// undone.
    Interrupted,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Undone => "undone",
            EventKind::RolledBack => "rolled_back",
            EventKind::Completed => "completed",
            EventKind::Retry => "retry",
            EventKind::Manual => "manual",
            EventKind::Intent => "intent",
            EventKind::Interrupted => "interrupted",
        }
    }
}

/// One row of `steward_events`. Env keys only, never values.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Event {
    pub at: Option<DateTime<Utc>>,
    pub client: String,
    pub fleet_revision: Option<String>,
    pub plan_hash: Option<String>,
    /// The release the run was for (`plan::release`): what a failure is remembered by.
    pub release: Option<String>,
    pub step: String,
    pub outcome: String,
    pub duration_ms: Option<i64>,
    pub versions: Vec<String>,
    pub env_keys: Vec<String>,
    pub deployment_id: Option<String>,
    pub error: Option<String>,
    pub actor: String,
    pub detail: Option<String>,
}

impl Event {
    pub fn new(client: &str, step: &str, kind: EventKind, actor: &str) -> Self {
        Event {
            client: client.to_owned(),
            step: step.to_owned(),
            outcome: kind.as_str().to_owned(),
            actor: actor.to_owned(),
            ..Event::default()
        }
    }
}

/// Create the table when absent. Idempotent.
pub async fn ensure_table(conn: &mut PgConnection) -> Result<(), RecordError> {
    sqlx::raw_sql(crate::postgres::EVENTS_TABLE)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn append(conn: &mut PgConnection, event: &Event) -> Result<(), RecordError> {
    sqlx::query(
        "INSERT INTO steward_events (client, fleet_revision, plan_hash, step, outcome, duration_ms, versions, env_keys, deployment_id, error, actor, detail, release)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&event.client)
    .bind(&event.fleet_revision)
    .bind(&event.plan_hash)
    .bind(&event.step)
    .bind(&event.outcome)
    .bind(event.duration_ms)
    .bind(&event.versions)
    .bind(&event.env_keys)
    .bind(&event.deployment_id)
    .bind(&event.error)
    .bind(&event.actor)
    .bind(&event.detail)
    .bind(&event.release)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Newest first. Reading works on a database without the table (nothing recorded yet).
/// An intent is shown only while no outcome of its step follows it: the step that was
/// running when the process died.
pub async fn history(conn: &mut PgConnection, limit: u32) -> Result<Vec<Event>, RecordError> {
    if !table_exists(conn).await? {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT at, client, fleet_revision, plan_hash, step, outcome, duration_ms, versions, env_keys, deployment_id, error, actor, detail,
                to_jsonb(e) ->> 'release' AS release
         FROM steward_events e
         WHERE e.outcome <> 'intent'
            OR NOT EXISTS (SELECT 1 FROM steward_events o WHERE o.id > e.id AND o.step = e.step AND o.outcome <> 'intent')
         ORDER BY at DESC, id DESC LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Event {
            at: row.get("at"),
            client: row.get("client"),
            fleet_revision: row.get("fleet_revision"),
            plan_hash: row.get("plan_hash"),
            release: row.get("release"),
            step: row.get("step"),
            outcome: row.get("outcome"),
            duration_ms: row.get("duration_ms"),
            versions: row.get("versions"),
            env_keys: row.get("env_keys"),
            deployment_id: row.get("deployment_id"),
            error: row.get("error"),
            actor: row.get("actor"),
            detail: row.get("detail"),
        })
        .collect())
}

async fn table_exists(conn: &mut PgConnection) -> Result<bool, RecordError> {
    Ok(
        sqlx::query_scalar("SELECT to_regclass('steward_events') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The Failed state: the newest apply-level outcome is a failure (or a rollback) and no
/// `retry` or success came after it.
pub async fn last_failure(conn: &mut PgConnection) -> Result<Option<Failure>, RecordError> {
    if !table_exists(conn).await? {
        return Ok(None);
    }
    // `release` through to_jsonb: a table written before that column existed lacks it.
    let row = sqlx::query(
        "SELECT at, plan_hash, outcome, detail, error, to_jsonb(e) ->> 'release' AS release FROM steward_events e
         WHERE step = 'apply' AND outcome IN ('failed', 'rolled_back', 'completed', 'retry')
         ORDER BY at DESC, id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.and_then(|row| {
        let outcome: String = row.get("outcome");
        matches!(outcome.as_str(), "failed" | "rolled_back").then(|| Failure {
            plan_hash: row
                .get::<Option<String>, _>("plan_hash")
                .unwrap_or_default(),
            release: row.get("release"),
            step: row
                .get::<Option<String>, _>("detail")
                .unwrap_or_else(|| "apply".to_owned()),
            error: row.get::<Option<String>, _>("error").unwrap_or_default(),
            at: row.get("at"),
        })
    }))
}
