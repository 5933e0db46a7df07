//! Observing a client database for planning: read-only, no lock, one connection and two
//! round trips — which of steward's tables exist, then everything from them (and the
//! schema's drift from its recorded fingerprint) in one statement. The daemon does this
//! for every client on every pass, so it must be cheap.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::{PgConnection, Row as _};

use super::connect::{Access, close, connect};
use super::identity::{Identity, judge};
use super::{PgError, versions};
use crate::manifest::DatabaseConfig;
use crate::migrations::Version;
use crate::plan::interrupted::{self, RunEvent};
use crate::plan::{Drift, Failure, IdentityObserved, Interruption, SchemaObserved};
use crate::secret::Secret;

/// What is live in the schema, shaped for the planner.
#[derive(Debug, Clone)]
pub struct SchemaState {
    pub identity: IdentityObserved,
    pub current: Option<Version>,
    pub rows: Vec<versions::Row>,
    /// How the live schema differs from the one recorded after the last run.
    pub drift: Option<Drift>,
    /// Whether a schema fingerprint was ever recorded (drift is unknown without one).
    pub has_reference: bool,
    /// The newest apply run stopped half-way, as its update record tells.
    pub interrupted: Option<Interruption>,
    /// The newest operator's request (`restore`, `migrate`, …) stopped half-way.
    pub request_interrupted: Option<Interruption>,
    /// The deployments steward put on production, newest first (see
    /// [`PRODUCTION_RECORDS`]): what an outside change is judged against.
    pub promoted: Vec<String>,
}

/// The update records that say steward put a deployment on production: a promote, a
/// finished rebake, `rollback --code`, each also undone (back to the deployment before),
/// a take-over (the production it found, by plan or by `adopt`), and `rollback --code`
/// as recorded before it was a plan.
pub const PRODUCTION_RECORDS: &str = "deployment_id IS NOT NULL AND ((step IN ('promote', 'rebake', 'rollback', 'take_over_promotion') AND outcome IN ('succeeded', 'undone')) OR (step IN ('rollback', 'promotion') AND outcome = 'manual'))";

impl SchemaState {
    pub fn to_observed(&self) -> SchemaObserved {
        let (applied, unfinished) = versions::split(&self.rows);
        SchemaObserved {
            identity: self.identity.clone(),
            current: self.current.clone(),
            applied,
            unfinished,
            last_backup: None,
            drift: self.drift.clone(),
        }
    }
}

/// Read identity, versions and the Failed state in a read-only session.
pub async fn observe(
    client: &str,
    url: &Secret,
    database: &DatabaseConfig,
) -> Result<(SchemaState, Option<Failure>), PgError> {
    let mut conn = connect(client, url, Access::ReadOnly).await?;
    let result = observe_on(&mut conn, client, database).await;
    close(conn).await;
    result
}

/// The observation on an open connection: two round trips.
pub async fn observe_on(
    conn: &mut PgConnection,
    client: &str,
    database: &DatabaseConfig,
) -> Result<(SchemaState, Option<Failure>), PgError> {
    // Round trip 1: which tables exist, and whether system_versions has steward's columns.
    let row = sqlx::query(
        "SELECT to_regclass('steward_identity') IS NOT NULL AS identity,
                to_regclass('system_versions') IS NOT NULL AS versions,
                to_regclass('steward_events') IS NOT NULL AS events,
                to_regclass('steward_schema') IS NOT NULL AS schema,
                EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('system_versions') AND attname = 'checksum' AND NOT attisdropped) AS checksum,
                EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('steward_events') AND attname = 'release' AND NOT attisdropped) AS release",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(PgError::query(client, "looking for steward's tables"))?;
    let (has_identity, has_versions, has_events, has_checksum): (bool, bool, bool, bool) = (
        row.get("identity"),
        row.get("versions"),
        row.get("events"),
        row.get("checksum"),
    );
    let has_reference: bool = row.get("schema");
    let has_release: bool = row.get("release");

    // Round trip 2: one statement, one row shape: (kind, a, b, c, at).
    let mut parts = Vec::new();
    if has_identity {
        parts.push("(SELECT 'identity'::text AS kind, client::text AS a, id::text AS b, NULL::text AS c, NULL::timestamptz AS at FROM steward_identity LIMIT 1)".to_owned());
    }
    if has_versions {
        let checksum = if has_checksum {
            "checksum::text"
        } else {
            "NULL::text"
        };
        parts.push(format!(
            "(SELECT DISTINCT ON (version) 'version'::text, version::text, status::text, {checksum}, applied_at FROM system_versions ORDER BY version, applied_at DESC)"
        ));
    }
    if has_events {
        // Release first: an error text may hold anything, so it goes last.
        let release = if has_release { "release" } else { "NULL::text" };
        parts.push(format!(
            "(SELECT 'event'::text, outcome, plan_hash, coalesce({release}, '') || chr(31) || coalesce(detail, '') || chr(31) || coalesce(error, ''), at FROM steward_events
              WHERE step = 'apply' AND outcome IN ('failed', 'rolled_back', 'completed', 'retry') ORDER BY at DESC, id DESC LIMIT 1)"
        ));
        parts.push(format!(
            "(SELECT 'promoted'::text, deployment_id, step, outcome, at FROM steward_events
              WHERE {PRODUCTION_RECORDS} ORDER BY id DESC LIMIT 1)"
        ));
        // Every event since the newest apply run started, to see whether that run, and an
        // operator's request made since, finished: the id first, for order, then the plan
        // hash (a run's events are the ones under its hash: a request that ran meanwhile,
        // or a lock-free pause, is not part of the apply run), then the deployment; the
        // detail (JSON for an intent) last.
        parts.push(
            "(SELECT 'run'::text, step, outcome, id::text || chr(31) || coalesce(plan_hash, '') || chr(31) || coalesce(deployment_id, '') || chr(31) || coalesce(detail, ''), at FROM steward_events
              WHERE id >= (SELECT coalesce(max(id), 0) FROM steward_events WHERE step = 'apply' AND outcome = 'started'))".to_owned(),
        );
    }
    if has_reference {
        parts.push(super::drift::observation_part(has_versions));
    }
    let mut identity = None;
    let mut rows = Vec::new();
    let mut failure = None;
    let mut drift = None;
    let mut events: Vec<(i64, String, RunEvent)> = Vec::new();
    let mut promoted = Vec::new();
    if !parts.is_empty() {
        let sql = parts.join(" UNION ALL ");
        for row in sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .map_err(PgError::query(client, "observing the schema"))?
        {
            let kind: String = row.get(0);
            let a: Option<String> = row.get(1);
            let b: Option<String> = row.get(2);
            let c: Option<String> = row.get(3);
            let at: Option<DateTime<Utc>> = row.get(4);
            match kind.as_str() {
                "identity" => {
                    let id = b.and_then(|b| b.parse().ok()).unwrap_or_default();
                    identity = Some(Identity {
                        client: a.unwrap_or_default(),
                        id,
                    });
                }
                "version" => {
                    let text = a.unwrap_or_default();
                    let version = text.parse::<Version>().map_err(|err| {
                        PgError::refused(client, format!("system_versions holds {err}"))
                    })?;
                    rows.push(versions::Row {
                        version,
                        status: b.unwrap_or_default(),
                        checksum: c,
                        applied_at: at.unwrap_or_default(),
                    });
                }
                "promoted" => promoted.extend(a),
                "schema" => {
                    drift = super::drift::drift_from_row(client, a, b, c.as_deref(), at)?;
                }
                "run" => {
                    let text = c.unwrap_or_default();
                    let mut fields = text.splitn(4, '\u{1f}');
                    let id = fields.next().and_then(|id| id.parse().ok()).unwrap_or(0);
                    let plan_hash = fields.next().unwrap_or_default().to_owned();
                    let deployment = fields.next().filter(|d| !d.is_empty());
                    let detail = fields.next().filter(|d| !d.is_empty());
                    events.push((
                        id,
                        plan_hash,
                        RunEvent {
                            step: a.unwrap_or_default(),
                            outcome: b.unwrap_or_default(),
                            deployment: deployment.map(str::to_owned),
                            detail: detail.map(str::to_owned),
                            at: at.unwrap_or_default(),
                        },
                    ));
                }
                _ => {
                    let outcome = a.unwrap_or_default();
                    if matches!(outcome.as_str(), "failed" | "rolled_back") {
                        let text = c.unwrap_or_default();
                        let mut fields = text.splitn(3, '\u{1f}');
                        let release = fields.next().unwrap_or_default();
                        let detail = fields.next().unwrap_or_default();
                        let error = fields.next().unwrap_or_default();
                        failure = Some(Failure {
                            plan_hash: b.unwrap_or_default(),
                            release: (!release.is_empty()).then(|| release.to_owned()),
                            step: if detail.is_empty() {
                                "apply".to_owned()
                            } else {
                                detail.to_owned()
                            },
                            error: error.to_owned(),
                            at: at.unwrap_or_default(),
                        });
                    }
                }
            }
        }
    }
    rows.sort_by(|x, y| x.version.cmp(&y.version));
    events.sort_by_key(|(id, ..)| *id);
    let (run, request) = interrupted::split_runs(events);
    // A promote that was in flight when the newest run stopped may have happened: its
    // deployment is steward's too.
    for event in &run {
        if event.step == "promote"
            && event.outcome == "intent"
            && let Some(deployment) = &event.deployment
            && !promoted.contains(deployment)
        {
            promoted.push(deployment.clone());
        }
    }
    let state = SchemaState {
        identity: judge(identity.as_ref(), client, database.identity),
        current: versions::current(&rows),
        rows,
        drift,
        has_reference,
        interrupted: interrupted::judge(&run),
        request_interrupted: interrupted::judge(&request),
        promoted,
    };
    Ok((state, failure))
}
