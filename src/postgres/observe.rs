//! Observing a client database for planning: read-only, no lock, one connection.

use super::connect::{Access, close, connect};
use super::identity::{judge, read_identity};
use super::{PgError, versions};
use crate::manifest::DatabaseConfig;
use crate::migrations::Version;
use crate::plan::{IdentityObserved, SchemaObserved};
use crate::secret::Secret;

/// What is live in the schema, shaped for the planner.
#[derive(Debug, Clone)]
pub struct SchemaState {
    pub identity: IdentityObserved,
    pub current: Option<Version>,
    pub rows: Vec<versions::Row>,
}

impl SchemaState {
    pub fn to_observed(&self) -> SchemaObserved {
        SchemaObserved {
            identity: self.identity.clone(),
            current: self.current.clone(),
            applied: self
                .rows
                .iter()
                .filter(|r| r.status == versions::Status::Applied.as_str())
                .map(|r| (r.version.clone(), r.checksum.clone()))
                .collect(),
            unfinished: self
                .rows
                .iter()
                .filter(|r| {
                    r.status == versions::Status::Failed.as_str()
                        || r.status == versions::Status::InProgress.as_str()
                })
                .map(|r| (r.version.clone(), r.status.clone()))
                .collect(),
            last_backup: None,
        }
    }
}

/// Read identity and versions in a read-only session (planning must never write).
pub async fn observe(
    client: &str,
    url: &Secret,
    database: &DatabaseConfig,
) -> Result<(SchemaState, Option<crate::plan::Failure>), PgError> {
    let mut conn = connect(client, url, Access::ReadOnly).await?;
    let identity = read_identity(&mut conn, client).await?;
    let rows = versions::latest_rows(&mut conn, client).await?;
    let failure = crate::apply::record::last_failure(&mut conn)
        .await
        .map_err(|err| PgError::Unreachable {
            client: client.to_owned(),
            reason: err.to_string(),
        })?;
    close(conn).await;
    let state = SchemaState {
        identity: judge(identity.as_ref(), client, database.identity),
        current: versions::current(&rows),
        rows,
    };
    Ok((state, failure))
}
