//! A client's database: observe it (schema version, identity, unfinished runs), and
//! change it under a lock (migrate up or down, verify, back up, restore). Always a real
//! Postgres; every write happens on one session that holds steward's advisory lock and
//! has checked the database's identity first.

pub mod backup;
pub mod baseline;
mod connect;
pub mod drift;
pub mod explain;
mod identity;
mod lock;
mod migrate;
mod observe;
pub mod path;
mod progress;
pub mod rehearse;
pub mod remote;
pub mod repair;
mod verify;
mod versions;

pub use baseline::{Baseline, BaselineRefusal};
pub use connect::{Access, close, connect};
pub use identity::{Identity, adopt, read_identity};
pub use lock::{LockHolder, Session, require_identity};
pub use migrate::{Actor, MigrateReport, check_dump_identity};
pub use observe::{PRODUCTION_RECORDS, SchemaState, observe, observe_on};
pub use path::{Direction, RunPath};
pub use progress::{Progress, Stopped};
pub use repair::RepairRefusal;
pub use verify::{CheckResult, VerifyReport, verify};
pub use versions::{Row, Status, current as current_of, ensure_table};

use std::path::PathBuf;

use crate::migrations::Version;
use crate::migrations::lint::Finding;

/// The update records' table (`apply::record` writes it). Here because a restore must
/// carry its rows across inside its own transaction.
pub const EVENTS_TABLE: &str = r#"
CREATE TABLE IF NOT EXISTS steward_events (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    client          text NOT NULL,
    fleet_revision  text,
    plan_hash       text,
    step            text NOT NULL,
    outcome         text NOT NULL,
    duration_ms     bigint,
    versions        text[] NOT NULL DEFAULT '{}',
    env_keys        text[] NOT NULL DEFAULT '{}',
    deployment_id   text,
    error           text,
    actor           text NOT NULL,
    detail          text
);
CREATE INDEX IF NOT EXISTS steward_events_at_idx ON steward_events (at DESC);
ALTER TABLE steward_events ADD COLUMN IF NOT EXISTS release text;
"#;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("client {client}: the database URL is not a valid postgres:// URL")]
    BadUrl { client: String },
    #[error("client {client}: cannot reach the database: {reason}")]
    Unreachable { client: String, reason: String },
    #[error(
        "client {client}: the database URL points at a transaction-mode pooler (port {port}), where advisory locks and prepared statements break; use the direct URL (db.<project>.supabase.co:5432) or the session-mode pooler (port 5432)"
    )]
    TransactionPooler { client: String, port: u16 },
    #[error("client {client}: {message}")]
    Refused { client: String, message: String },
    /// A statement of a migration (or of its `.verify.sql`) failed. `progress` says what
    /// the run had committed by then; a verify file runs after its run, so it has none.
    #[error("client {client}: migration {version} failed at {}:{line}: {message}{}", file.display(), progress.as_ref().map(|p| format!("; {p}")).unwrap_or_default())]
    Migration {
        client: String,
        version: Version,
        file: PathBuf,
        line: usize,
        message: String,
        progress: Option<Box<Progress>>,
    },
    #[error(
        "client {client}: refused before anything ran: transaction control in a migration steward runs inside its own transaction:\n  {}",
        findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    )]
    TransactionControl {
        client: String,
        findings: Vec<Finding>,
    },
    #[error("client {client}: repair refused: {refusal}")]
    Repair {
        client: String,
        #[source]
        refusal: RepairRefusal,
    },
    #[error("client {client}: baseline refused: {refusal}")]
    Baseline {
        client: String,
        #[source]
        refusal: BaselineRefusal,
    },
    #[error("client {client}: {context}: {}", explain::explain(source))]
    Query {
        client: String,
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("client {client}: backup: {message}")]
    Backup { client: String, message: String },
}

impl PgError {
    /// Whether trying again later may help (a network blip), as opposed to a refusal or a
    /// broken migration that needs a person.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PgError::Unreachable { .. } | PgError::Query { .. })
    }

    /// A guard said no: exit code 3.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PgError::Refused { .. }
                | PgError::TransactionPooler { .. }
                | PgError::TransactionControl { .. }
                | PgError::Repair { .. }
                | PgError::Baseline { .. }
        )
    }

    /// Say how far the run had got: a migration error carries `progress` as it is; any
    /// other error met mid-run says it after its context.
    pub(crate) fn with_progress(self, progress: Progress) -> PgError {
        match self {
            PgError::Migration {
                client,
                version,
                file,
                line,
                message,
                ..
            } => PgError::Migration {
                client,
                version,
                file,
                line,
                message,
                progress: Some(Box::new(progress)),
            },
            PgError::Query {
                client,
                context,
                source,
            } => PgError::Query {
                client,
                context: format!("{context} ({progress})"),
                source,
            },
            other => other,
        }
    }

    pub(crate) fn query(
        client: &str,
        context: impl Into<String>,
    ) -> impl FnOnce(sqlx::Error) -> PgError {
        let client = client.to_owned();
        let context = context.into();
        move |source| PgError::Query {
            client,
            context,
            source,
        }
    }

    pub(crate) fn refused(client: &str, message: impl Into<String>) -> PgError {
        PgError::Refused {
            client: client.to_owned(),
            message: message.into(),
        }
    }
}
