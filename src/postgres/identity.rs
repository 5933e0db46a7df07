//! The database's identity: which client it belongs to, written once by `steward adopt`.
//! This is the guide's "database fingerprint matches": steward must never migrate the
//! wrong client's database because a URL was pasted into the wrong manifest.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::PgError;
use crate::plan::IdentityObserved;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub client: String,
    pub id: Uuid,
}

pub async fn read_identity(
    conn: &mut PgConnection,
    client: &str,
) -> Result<Option<Identity>, PgError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('steward_identity') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(PgError::query(client, "looking for steward_identity"))?;
    if !exists {
        return Ok(None);
    }
    let row = sqlx::query("SELECT client, id FROM steward_identity LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(PgError::query(client, "reading steward_identity"))?;
    Ok(row.map(|r| Identity {
        client: r.get("client"),
        id: r.get("id"),
    }))
}

/// Compare what the database says with who is asking.
pub fn judge(found: Option<&Identity>, client: &str, pinned: Option<Uuid>) -> IdentityObserved {
    match found {
        None => IdentityObserved::NotAdopted,
        Some(id) if id.client != client => IdentityObserved::OtherClient(id.client.clone()),
        Some(id) => match pinned {
            Some(pin) if pin != id.id => IdentityObserved::PinnedMismatch {
                pinned: pin,
                found: id.id,
            },
            _ => IdentityObserved::Matches,
        },
    }
}

/// Write the identity. Refuses when the database already belongs to another client.
pub async fn adopt(
    conn: &mut PgConnection,
    client: &str,
    actor: &str,
) -> Result<Identity, PgError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS steward_identity (
            client     text        NOT NULL,
            id         uuid        NOT NULL,
            adopted_at timestamptz NOT NULL DEFAULT now(),
            adopted_by text        NOT NULL,
            singleton  boolean     NOT NULL DEFAULT true UNIQUE CHECK (singleton)
        )",
    )
    .execute(&mut *conn)
    .await
    .map_err(PgError::query(client, "creating steward_identity"))?;
    if let Some(existing) = read_identity(conn, client).await? {
        if existing.client != client {
            return Err(PgError::refused(
                client,
                format!(
                    "this database was adopted by client `{}` ({}); refusing to adopt it again",
                    existing.client, existing.id
                ),
            ));
        }
        return Ok(existing);
    }
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO steward_identity (client, id, adopted_by) VALUES ($1, $2, $3)")
        .bind(client)
        .bind(id)
        .bind(actor)
        .execute(&mut *conn)
        .await
        .map_err(PgError::query(client, "writing steward_identity"))?;
    Ok(Identity {
        client: client.to_owned(),
        id,
    })
}
