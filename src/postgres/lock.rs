//! The write session: one connection that holds steward's advisory lock for the whole
//! run and has checked the database's identity on that same connection, before the first
//! DDL — so a DNS or proxy change between check and write cannot send the DDL elsewhere.
//!
//! The lock is taken by polling `pg_try_advisory_lock`, never by blocking: a waiter
//! blocked in `pg_advisory_lock` deadlocks with `CREATE INDEX CONCURRENTLY`, which waits
//! for every older transaction (Flyway and goose users learned this the hard way).
//! The session *is* the guard: dropping it closes the connection, and Postgres releases a
//! session-level advisory lock when its session ends, so an early `?` cannot leak it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::connect::{Access, connect};
use super::identity::{judge, read_identity};
use super::{PgError, versions};
use crate::plan::IdentityObserved;
use crate::secret::Secret;

/// "steward" in ASCII, as the advisory lock key: one lock per database.
const LOCK_KEY: i64 = 0x0073_7465_7761_7264;

/// Who holds the lock, for the refusal message.
#[derive(Debug, Clone)]
pub struct LockHolder {
    pub application_name: String,
    pub pid: i32,
    pub since: Option<DateTime<Utc>>,
}

/// A locked, identity-checked connection to one client's database.
#[derive(Debug)]
pub struct Session {
    pub(crate) conn: PgConnection,
    pub(crate) client: String,
    /// Set while rehearsing on a scratch copy: measures what each migration does.
    pub(crate) probe: Option<super::rehearse::Probe>,
}

impl Session {
    /// Connect, take the lock (retrying until `lock_timeout`), check identity.
    /// `adopting` skips the identity check, for `steward adopt` itself.
    pub async fn open(
        client: &str,
        url: &Secret,
        pinned: Option<Uuid>,
        lock_timeout: Duration,
        adopting: bool,
    ) -> Result<Session, PgError> {
        let mut session = Session::lock(client, url, lock_timeout).await?;
        if !adopting {
            session.check_identity(pinned).await?;
        }
        session.ready().await?;
        Ok(session)
    }

    /// Connect and take the lock, nothing more: an operator's request judges the
    /// identity in its plan, on this connection, before [`Session::ready`] writes
    /// anything (not even `system_versions`).
    pub async fn lock(
        client: &str,
        url: &Secret,
        lock_timeout: Duration,
    ) -> Result<Session, PgError> {
        let mut conn = connect(client, url, Access::ReadWrite).await?;
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LOCK_KEY)
                .fetch_one(&mut conn)
                .await
                .map_err(PgError::query(client, "taking the migration lock"))?;
            if got {
                break;
            }
            if started.elapsed() >= lock_timeout {
                let holder = holder(&mut conn, client).await?;
                let who = match holder {
                    Some(h) => format!(
                        "held by `{}` (pid {}{})",
                        h.application_name,
                        h.pid,
                        h.since
                            .map(|s| format!(", since {}", s.format("%Y-%m-%d %H:%M:%S UTC")))
                            .unwrap_or_default()
                    ),
                    None => "held by another session".to_owned(),
                };
                return Err(PgError::refused(
                    client,
                    format!(
                        "another steward run is working on this database: the lock is {who}; gave up after {} s",
                        lock_timeout.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
        Ok(Session {
            conn,
            client: client.to_owned(),
            probe: None,
        })
    }

    /// Make sure steward's bookkeeping table is there, before the first step writes.
    pub async fn ready(&mut self) -> Result<(), PgError> {
        versions::ensure_table(&mut self.conn, &self.client).await
    }

    /// Refuse unless this database is this client's.
    pub async fn check_identity(&mut self, pinned: Option<Uuid>) -> Result<(), PgError> {
        let found = read_identity(&mut self.conn, &self.client).await?;
        require_identity(&self.client, &judge(found.as_ref(), &self.client, pinned))
    }

    pub fn client(&self) -> &str {
        &self.client
    }

    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Release the lock and close. Dropping the session does the same, less politely.
    pub async fn close(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .execute(&mut self.conn)
            .await;
        super::connect::close(self.conn).await;
    }
}

async fn holder(conn: &mut PgConnection, client: &str) -> Result<Option<LockHolder>, PgError> {
    let row = sqlx::query(
        "SELECT a.application_name, a.pid, a.backend_start
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.classid = ($1 >> 32)::oid AND l.objid = ($1 & 4294967295)::oid AND l.objsubid = 1
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         LIMIT 1",
    )
    .bind(LOCK_KEY)
    .fetch_optional(&mut *conn)
    .await
    .map_err(PgError::query(client, "finding the lock holder"))?;
    Ok(row.map(|r| LockHolder {
        application_name: r
            .get::<Option<String>, _>("application_name")
            .unwrap_or_default(),
        pid: r.get("pid"),
        since: r.get("backend_start"),
    }))
}

/// The identity refusal, from an observation: the write session and a read-only dry run
/// refuse the same database in the same words.
pub fn require_identity(client: &str, observed: &IdentityObserved) -> Result<(), PgError> {
    match observed {
        IdentityObserved::Matches => Ok(()),
        IdentityObserved::NotAdopted => Err(PgError::refused(
            client,
            format!("this database is not adopted by steward; run `steward adopt {client}` first"),
        )),
        IdentityObserved::OtherClient(other) => Err(PgError::refused(
            client,
            format!(
                "this database belongs to client `{other}`, not `{client}`: check spec.database.url"
            ),
        )),
        IdentityObserved::PinnedMismatch { pinned, found } => Err(PgError::refused(
            client,
            format!("this database's identity is {found}, but the manifest pins {pinned}"),
        )),
    }
}
