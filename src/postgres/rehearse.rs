//! Rehearsal on a copy: restore a backup into a uniquely named scratch database, run the
//! pending migrations there with the very code of a real run (`Session::migrate_up`:
//! batches, no-transaction migrations, bookkeeping), run the verify checks, and drop the
//! copy — on success, on failure and on panic. Production is never connected to.
//!
//! What each migration did is measured by a probe the migration runner carries while
//! rehearsing: inside a batch, a row written after each migration records the session's
//! own `pg_locks` and `pg_stat_xact_user_tables` (exact, and free of sampling); around a
//! no-transaction statement, a second session samples `pg_locks` for the runner's pid.

use sqlx::AssertSqlSafe;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use sqlx::{PgConnection, Row as _};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::connect::{Access, close, connect};
use super::lock::Session;
use super::{Actor, PgError, backup};
use crate::manifest::DatabaseConfig;
use crate::migrations::{Catalog, Version, split};
use crate::plan::rehearsal::{LockTaken, MigrationFigures};
use crate::plan::{LockMode, Rehearsal, RehearsalFailure};
use crate::secret::Secret;

/// Everything a rehearsal needs, owned: it runs on its own task so that the scratch
/// database is dropped even when the rehearsal panics or its caller goes away.
#[derive(Debug, Clone)]
pub struct RehearsalInput {
    pub client: String,
    /// The server to create the scratch database on (its database part is where steward
    /// connects to run CREATE/DROP DATABASE).
    pub server: Secret,
    pub backup_id: String,
    pub backup_file: PathBuf,
    pub catalog: Catalog,
    pub to: Version,
    pub database: DatabaseConfig,
    pub pinned: Option<Uuid>,
}

/// Restore, migrate, verify on a scratch copy, and drop it. A migration or verify that
/// fails is a result (`failure`); not being able to rehearse at all is an error.
pub async fn rehearse(input: RehearsalInput) -> Result<Rehearsal, PgError> {
    let client = input.client.clone();
    let name = scratch_name(&client);
    let scratch = with_database(&client, &input.server, &name)?;
    create_scratch(&client, &input.server, &name).await?;
    let mut guard = ScratchGuard {
        client: client.clone(),
        server: input.server.clone(),
        name: name.clone(),
        armed: true,
    };
    let result = AssertUnwindSafe(run_on_copy(&input, &scratch, &name))
        .catch_unwind()
        .await;
    guard.armed = false;
    if let Err(err) = drop_scratch(&client, &input.server, &name).await {
        tracing::warn!(client = %client, database = %name, error = %err, "could not drop the rehearsal's scratch database; drop it by hand");
    }
    match result {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Drops the scratch database when the rehearsal is abandoned half-way (its caller was
/// cancelled): a task on the runtime does it, since `Drop` cannot wait.
struct ScratchGuard {
    client: String,
    server: Secret,
    name: String,
    armed: bool,
}

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, server, name) = (self.client.clone(), self.server.clone(), self.name.clone());
        // Boxed as `Send` here, where the connection's lifetimes are concrete: sqlx's
        // executor bounds are otherwise too general for `spawn` to prove.
        let task: futures::future::BoxFuture<'static, ()> = Box::pin(async move {
            if let Err(err) = drop_scratch(&client, &server, &name).await {
                tracing::warn!(client = %client, database = %name, error = %err, "could not drop an abandoned rehearsal's scratch database; drop it by hand");
            }
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(task);
        }
    }
}

async fn run_on_copy(
    input: &RehearsalInput,
    scratch: &Secret,
    name: &str,
) -> Result<Rehearsal, PgError> {
    let started = Instant::now();
    let client = input.client.as_str();
    backup::restore(client, scratch, &input.backup_file).await?;
    let mut session =
        Session::open(client, scratch, input.pinned, Duration::from_secs(5), false).await?;
    let from = session.current_version().await?;
    session.probe = Some(Probe::start(&mut session, scratch).await?);
    let actor = Actor {
        name: "steward (rehearsal)",
        revision: None,
    };
    let run = session.migrate_up(&input.catalog, &input.to, actor).await;
    let probe = session.probe.take();
    let migrations = match probe {
        Some(probe) => probe.finish(&mut session.conn, client).await?,
        None => Vec::new(),
    };
    let failure = match run {
        Ok(_) => verify_failure(&mut session, input).await?,
        Err(PgError::Migration {
            version,
            file,
            line,
            message,
            ..
        }) => Some(RehearsalFailure {
            statement: statement_at(&input.catalog, &file, line),
            at: Some(format!("{}:{line}", file.display())),
            version: Some(version),
            message,
        }),
        Err(other) => return Err(other),
    };
    session.close().await;
    Ok(Rehearsal {
        scratch: name.to_owned(),
        backup: input.backup_id.clone(),
        from,
        to: input.to.clone(),
        migrations,
        failure,
        elapsed_ms: millis(started.elapsed()),
    })
}

/// The verify step of a real run, on the copy.
async fn verify_failure(
    session: &mut Session,
    input: &RehearsalInput,
) -> Result<Option<RehearsalFailure>, PgError> {
    let report = super::verify(
        &mut session.conn,
        &input.client,
        &input.catalog,
        &input.database,
        Some(&input.to),
    )
    .await?;
    if report.passed() {
        return Ok(None);
    }
    Ok(Some(RehearsalFailure {
        version: Some(input.to.clone()),
        at: None,
        statement: None,
        message: format!(
            "verify failed: {}",
            report
                .failures()
                .iter()
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }))
}

/// The first line of the statement of `file` that contains `line`.
fn statement_at(catalog: &Catalog, file: &std::path::Path, line: usize) -> Option<String> {
    let script = catalog.migrations.iter().find_map(|m| {
        [Some(&m.up), m.down.as_ref(), m.verify.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.path == file)
    })?;
    let statement = split::split(&script.sql)
        .into_iter()
        .take_while(|s| s.line <= line)
        .last()?;
    let first = statement
        .sql
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--"))
        .unwrap_or_default();
    Some(if first.chars().count() > 120 {
        format!("{}…", first.chars().take(120).collect::<String>())
    } else {
        first.to_owned()
    })
}

/// `steward_rehearsal_<client>_<8 hex>`: unique, recognisable, within Postgres's 63 bytes.
fn scratch_name(client: &str) -> String {
    let client: String = client
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(32)
        .collect();
    format!("steward_rehearsal_{client}_{:08x}", rand::random::<u32>())
}

/// The same server and credentials, another database.
fn with_database(client: &str, server: &Secret, name: &str) -> Result<Secret, PgError> {
    let mut url = reqwest::Url::parse(server.expose()).map_err(|_| PgError::BadUrl {
        client: client.to_owned(),
    })?;
    url.set_path(&format!("/{name}"));
    Ok(Secret::new(url.to_string()))
}

async fn create_scratch(client: &str, server: &Secret, name: &str) -> Result<(), PgError> {
    let mut admin = connect(client, server, Access::ReadWrite).await?;
    let created = sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await;
    close(admin).await;
    match created {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42501") => {
            Err(PgError::refused(
                client,
                "the rehearsal needs a server where steward may CREATE DATABASE, and this role may not: set spec.rehearsal.url to such a server (a secret ref), or grant CREATEDB",
            ))
        }
        Err(err) => Err(PgError::Query {
            client: client.to_owned(),
            context: "creating the rehearsal's scratch database".to_owned(),
            source: err,
        }),
    }
}

async fn drop_scratch(client: &str, server: &Secret, name: &str) -> Result<(), PgError> {
    let mut admin = connect(client, server, Access::ReadWrite).await?;
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let dropped = sqlx::query(AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .map_err(PgError::query(
            client,
            "dropping the rehearsal's scratch database",
        ));
    close(admin).await;
    dropped.map(|_| ())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Tables that existed before the run, by oid: locks on tables a migration creates
/// block nobody, so only these count. steward's own tables are left out.
const EXISTING_TABLES: &str = "SELECT c.oid::bigint AS oid,
        CASE WHEN n.nspname = 'public' THEN '' ELSE n.nspname || '.' END || c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg\\_temp%'
      AND c.relname <> 'system_versions' AND c.relname NOT LIKE 'steward\\_%'";

const PROBE_TABLE: &str = "CREATE TEMP TABLE steward_probe (
    seq bigserial, mark text NOT NULL, version text, at timestamptz NOT NULL,
    rows bigint NOT NULL, locks jsonb NOT NULL)";

/// Measures one migration run on the scratch copy; carried by the `Session`.
#[derive(Debug)]
pub(crate) struct Probe {
    scratch: Secret,
    client: String,
    pid: i32,
    existing: BTreeMap<i64, String>,
    /// No-transaction statements, as they ran.
    alone: Vec<AloneStatement>,
}

#[derive(Debug)]
struct AloneStatement {
    version: Version,
    duration: Duration,
    rows: u64,
    locks: BTreeSet<(i64, String)>,
}

/// A second session sampling the runner's locks while one statement runs.
pub(crate) struct Watch {
    stop: oneshot::Sender<()>,
    samples: tokio::task::JoinHandle<BTreeSet<(i64, String)>>,
    started: Instant,
}

impl Probe {
    async fn start(session: &mut Session, scratch: &Secret) -> Result<Probe, PgError> {
        let client = session.client.clone();
        let conn = &mut session.conn;
        sqlx::raw_sql(PROBE_TABLE)
            .execute(&mut *conn)
            .await
            .map_err(PgError::query(&client, "preparing the rehearsal probe"))?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .map_err(PgError::query(&client, "preparing the rehearsal probe"))?;
        let existing = sqlx::query(EXISTING_TABLES)
            .fetch_all(&mut *conn)
            .await
            .map_err(PgError::query(&client, "listing the copy's tables"))?
            .into_iter()
            .map(|row| (row.get::<i64, _>("oid"), row.get::<String, _>("name")))
            .collect();
        Ok(Probe {
            scratch: scratch.clone(),
            client,
            pid,
            existing,
            alone: Vec::new(),
        })
    }

    /// SQL that marks a batch's start (right after BEGIN).
    pub(crate) fn batch_begin() -> String {
        Self::mark("begin", None)
    }

    /// SQL that records the session's locks and rows after one migration of a batch.
    pub(crate) fn after(version: &Version) -> String {
        Self::mark("after", Some(version))
    }

    /// SQL that marks the batch's end (right before COMMIT).
    pub(crate) fn batch_end() -> String {
        Self::mark("end", None)
    }

    fn mark(mark: &str, version: Option<&Version>) -> String {
        format!(
            "INSERT INTO pg_temp.steward_probe (mark, version, at, rows, locks) SELECT '{mark}', {}, clock_timestamp(),
               (SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_xact_user_tables
                 WHERE relname <> 'system_versions' AND relname NOT LIKE 'steward\\_%' AND schemaname NOT LIKE 'pg\\_temp%'),
               (SELECT coalesce(jsonb_agg(jsonb_build_array(relation::bigint, mode)), '[]') FROM pg_locks
                 WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted);\n",
            version.map_or("NULL".to_owned(), |v| format!("'{}'", v.as_str()))
        )
    }

    /// Start sampling the runner's locks from a second session, for one no-transaction
    /// statement (its locks are gone once it returns).
    pub(crate) fn watch(&self) -> Watch {
        let (stop, mut stopped) = oneshot::channel();
        let (scratch, client, pid) = (self.scratch.clone(), self.client.clone(), self.pid);
        let samples = tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let Ok(mut conn) = connect(&client, &scratch, Access::ReadOnly).await else {
                return seen;
            };
            loop {
                if let Ok(rows) = sqlx::query(
                    "SELECT relation::bigint AS oid, mode FROM pg_locks WHERE pid = $1 AND locktype = 'relation' AND granted",
                )
                .bind(pid)
                .fetch_all(&mut conn)
                .await
                {
                    seen.extend(rows.into_iter().map(|r| (r.get("oid"), r.get("mode"))));
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
            close(conn).await;
            seen
        });
        Watch {
            stop,
            samples,
            started: Instant::now(),
        }
    }

    /// The statement `watch` was sampling has returned.
    pub(crate) async fn statement_done(&mut self, version: &Version, watch: Watch, rows: u64) {
        let duration = watch.started.elapsed();
        let _ = watch.stop.send(());
        let locks = watch.samples.await.unwrap_or_default();
        self.alone.push(AloneStatement {
            version: version.clone(),
            duration,
            rows,
            locks,
        });
    }

    /// Read the batch probes back and turn everything into per-migration figures.
    async fn finish(
        self,
        conn: &mut PgConnection,
        client: &str,
    ) -> Result<Vec<MigrationFigures>, PgError> {
        let marks: Vec<Mark> = sqlx::query(
            "SELECT mark, version, at, rows, locks::text AS locks FROM pg_temp.steward_probe ORDER BY seq",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(PgError::query(client, "reading the rehearsal probe"))?
        .into_iter()
        .map(|row| Mark {
            mark: row.get("mark"),
            version: row.get("version"),
            at: row.get("at"),
            rows: row.get("rows"),
            locks: serde_json::from_str(&row.get::<String, _>("locks")).unwrap_or_default(),
        })
        .collect();
        let mut figures = self.batch_figures(&marks);
        figures.extend(self.alone_figures());
        figures.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(figures)
    }

    fn batch_figures(&self, marks: &[Mark]) -> Vec<MigrationFigures> {
        let mut out = Vec::new();
        let mut batch: Vec<&Mark> = Vec::new();
        for mark in marks {
            match mark.mark.as_str() {
                "begin" => batch = vec![mark],
                "after" => batch.push(mark),
                _ => {
                    out.extend(self.one_batch(&batch, mark.at));
                    batch.clear();
                }
            }
        }
        out
    }

    /// Migrations of one committed batch: each lock first seen after migration k was
    /// taken by k and held from k's start until the batch's COMMIT.
    fn one_batch(&self, batch: &[&Mark], end: DateTime<Utc>) -> Vec<MigrationFigures> {
        batch
            .windows(2)
            .filter_map(|pair| {
                let (before, after) = (pair[0], pair[1]);
                let version = after.version.as_deref()?.parse::<Version>().ok()?;
                let taken: BTreeSet<(i64, String)> =
                    after.locks.difference(&before.locks).cloned().collect();
                let held = (end - before.at).to_std().unwrap_or_default();
                Some(MigrationFigures {
                    version,
                    duration_ms: millis((after.at - before.at).to_std().unwrap_or_default()),
                    lock: self.strongest(&taken, held),
                    rows: u64::try_from(after.rows - before.rows).unwrap_or(0),
                })
            })
            .collect()
    }

    fn alone_figures(&self) -> Vec<MigrationFigures> {
        let mut by_version: BTreeMap<&Version, Vec<&AloneStatement>> = BTreeMap::new();
        for statement in &self.alone {
            by_version
                .entry(&statement.version)
                .or_default()
                .push(statement);
        }
        by_version
            .into_iter()
            .map(|(version, statements)| {
                // A no-transaction statement holds its locks only while it runs.
                let lock = statements
                    .iter()
                    .filter_map(|s| self.strongest(&s.locks, s.duration))
                    .max_by_key(|l| (l.mode, l.held_ms));
                MigrationFigures {
                    version: version.clone(),
                    duration_ms: millis(statements.iter().map(|s| s.duration).sum()),
                    lock,
                    rows: statements.iter().map(|s| s.rows).sum(),
                }
            })
            .collect()
    }

    /// The strongest mode among `locks` on tables that existed before the run.
    fn strongest(&self, locks: &BTreeSet<(i64, String)>, held: Duration) -> Option<LockTaken> {
        let on_existing: Vec<(LockMode, &String)> = locks
            .iter()
            .filter_map(|(oid, mode)| Some((LockMode::from_pg(mode)?, self.existing.get(oid)?)))
            .collect();
        let mode = on_existing.iter().map(|(m, _)| *m).max()?;
        let tables: BTreeSet<String> = on_existing
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, t)| (*t).clone())
            .collect();
        Some(LockTaken {
            mode,
            tables: tables.into_iter().collect(),
            held_ms: millis(held),
        })
    }
}

struct Mark {
    mark: String,
    version: Option<String>,
    at: DateTime<Utc>,
    rows: i64,
    locks: BTreeSet<(i64, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_unique_and_fit_postgres() {
        let long = "a".repeat(63);
        let (a, b) = (scratch_name(&long), scratch_name(&long));
        assert_ne!(a, b);
        assert!(a.len() <= 63, "{a}");
        assert!(scratch_name("acme-eu").starts_with("steward_rehearsal_acme_eu_"));
    }

    #[test]
    fn the_scratch_url_keeps_server_and_credentials() {
        let url = with_database(
            "c",
            &Secret::new("postgres://app:pw@db.example:6000/main?sslmode=require"),
            "scratch",
        )
        .expect("url");
        assert_eq!(
            url.expose(),
            "postgres://app:pw@db.example:6000/scratch?sslmode=require"
        );
    }
}
