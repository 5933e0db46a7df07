//! Exactly once: a message with an idempotency key (client, event, plan or release hash)
//! is sent only by whoever first records the key in the client's own database, so the
//! CLI and the daemon, a second pass or a restarted daemon never send it twice.

use crate::postgres::{Access, PgError, close, connect};
use crate::secret::Secret;

const ENSURE: &str = "CREATE TABLE IF NOT EXISTS steward_notifications (
    key text PRIMARY KEY,
    event text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now()
)";

/// Record `key`; true when this call recorded it (and so should send), false when it
/// was recorded before.
pub async fn claim(client: &str, url: &Secret, key: &str, event: &str) -> Result<bool, PgError> {
    let mut conn = connect(client, url, Access::ReadWrite).await?;
    sqlx::raw_sql(ENSURE)
        .execute(&mut conn)
        .await
        .map_err(PgError::query(client, "creating steward_notifications"))?;
    let claimed: Option<String> = sqlx::query_scalar(
        "INSERT INTO steward_notifications (key, event) VALUES ($1, $2)
         ON CONFLICT (key) DO NOTHING RETURNING key",
    )
    .bind(key)
    .bind(event)
    .fetch_optional(&mut conn)
    .await
    .map_err(PgError::query(client, "recording a notification"))?;
    close(conn).await;
    Ok(claimed.is_some())
}

/// `steward retry`: the same release runs again as a new attempt, so its start, end and
/// failure may be told again. A `scheduled` notice stays told.
pub async fn forget_attempt(client: &str, conn: &mut sqlx::PgConnection) -> Result<(), PgError> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('steward_notifications') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await
            .map_err(PgError::query(client, "looking for steward_notifications"))?;
    if exists {
        sqlx::query("DELETE FROM steward_notifications WHERE event <> 'scheduled'")
            .execute(&mut *conn)
            .await
            .map_err(PgError::query(
                client,
                "clearing the told events for a retry",
            ))?;
    }
    Ok(())
}
