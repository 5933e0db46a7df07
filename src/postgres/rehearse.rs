//! Rehearsal on a copy: restore a backup into a uniquely named scratch database, run the
//! pending migrations there with the very code of a real run (`Session::migrate_up`:
//! batches, no-transaction migrations, bookkeeping), run the verify checks, and drop the
//! copy — on success, on failure and on panic. Production is never connected to.
//!
//! What each migration did is measured by a probe the migration runner carries while
//! rehearsing (see [`Probe`]): inside a batch, marks streamed back between migrations
//! give each one's time, its statements' command tags its rows, and the session's own
//! `pg_locks` the locks it took (exact, and free of sampling); around a no-transaction
//! statement, a second session samples `pg_locks` for the runner's pid.

use sqlx::AssertSqlSafe;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    let migrations = probe.map(Probe::finish).unwrap_or_default();
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
const EXISTING_TABLES: &str = "SELECT c.oid::bigint AS oid, c.relname AS relname,
        CASE WHEN n.nspname = 'public' THEN '' ELSE n.nspname || '.' END || c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg\\_temp%'
      AND c.relname <> 'system_versions' AND c.relname NOT LIKE 'steward\\_%'";

/// The column that tells a probe's mark from a migration's own rows.
const MARK: &str = "steward_probe";
/// The column of the row that starts a migration (the batch's `set_config`).
pub(crate) const MIGRATION_START: &str = "steward_migration_start";

/// Measures one migration run on the scratch copy; carried by the `Session`.
///
/// It costs next to nothing per migration, so a rehearsal runs at about the speed of
/// the real run: the batch is streamed, and each migration's rows touched are read from
/// the command tags of its statements; after each migration a mark row gives the time;
/// the session's own `pg_locks` are read only after a migration that names a table
/// that existed before the run (the only locks that block anyone) and once at the
/// batch's end. A lock first seen at a mark was taken by one of the migrations since the
/// previous lock reading; it is put on the earliest of them, so the time it is said to
/// be held is never shorter than the truth.
#[derive(Debug)]
pub(crate) struct Probe {
    scratch: Secret,
    client: String,
    pid: i32,
    existing: BTreeMap<i64, String>,
    /// The existing tables' own names, lowercased: a migration that names none of them
    /// needs no lock reading of its own.
    names: BTreeSet<String>,
    /// Figures of the batches that committed.
    batches: Vec<MigrationFigures>,
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

/// One mark of a streamed batch.
#[derive(Debug)]
struct Mark {
    version: Option<Version>,
    at_us: i64,
    /// The session's locks on existing tables, when this mark read them.
    locks: Option<BTreeSet<(i64, String)>>,
    /// Rows the migration's own statements touched (from their command tags).
    rows: u64,
}

impl Probe {
    async fn start(session: &mut Session, scratch: &Secret) -> Result<Probe, PgError> {
        let client = session.client.clone();
        let conn = &mut session.conn;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .map_err(PgError::query(&client, "preparing the rehearsal probe"))?;
        let rows = sqlx::query(EXISTING_TABLES)
            .fetch_all(&mut *conn)
            .await
            .map_err(PgError::query(&client, "listing the copy's tables"))?;
        let names = rows
            .iter()
            .map(|row| row.get::<String, _>("relname").to_lowercase())
            .collect();
        let existing = rows
            .into_iter()
            .map(|row| (row.get::<i64, _>("oid"), row.get::<String, _>("name")))
            .collect();
        Ok(Probe {
            scratch: scratch.clone(),
            client,
            pid,
            existing,
            names,
            batches: Vec::new(),
            alone: Vec::new(),
        })
    }

    /// SQL that marks a batch's start (right after BEGIN).
    pub(crate) fn batch_begin(&self) -> String {
        self.mark(None, false)
    }

    /// SQL that marks the end of one migration of a batch (before its bookkeeping row).
    pub(crate) fn after(&self, version: &Version, sql: &str) -> String {
        self.mark(Some(version), self.names_an_existing_table(sql))
    }

    /// SQL that marks the batch's end (right before COMMIT), reading every lock.
    pub(crate) fn batch_end(&self) -> String {
        self.mark(None, true)
    }

    fn mark(&self, version: Option<&Version>, read_locks: bool) -> String {
        let locks = if read_locks && !self.existing.is_empty() {
            let oids: Vec<String> = self.existing.keys().map(i64::to_string).collect();
            format!(
                "(SELECT coalesce(jsonb_agg(jsonb_build_array(relation::bigint, mode)), '[]')::text FROM pg_locks
                   WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted AND relation = ANY('{{{}}}'::oid[]))",
                oids.join(",")
            )
        } else if read_locks {
            "'[]'".to_owned()
        } else {
            "NULL::text".to_owned()
        };
        format!(
            "SELECT {} AS {MARK}, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS at_us, {locks} AS locks;\n",
            version.map_or("''".to_owned(), |v| format!("'{}'", v.as_str()))
        )
    }

    /// Whether `sql` names (as a word) a table that existed before the run. A false
    /// positive only costs a lock reading.
    fn names_an_existing_table(&self, sql: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let sql = sql.to_lowercase();
        let words: BTreeSet<&str> = sql
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .filter(|w| !w.is_empty())
            .collect();
        self.names.iter().any(|name| {
            if name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
            {
                words.contains(name.as_str())
            } else {
                sql.contains(name.as_str())
            }
        })
    }

    /// Run one batch (`BEGIN … COMMIT` with this probe's marks), streaming its results:
    /// the figures of its migrations are kept once it has committed.
    pub(crate) async fn run_batch(
        &mut self,
        conn: &mut PgConnection,
        sql: &str,
    ) -> Result<(), sqlx::Error> {
        use futures::TryStreamExt as _;
        use sqlx::Either;

        let mut marks = Vec::new();
        let mut rows = 0u64;
        let mut counting = false;
        // A statement that returned rows (a SELECT) touched none: its count is rows sent.
        let mut returned_rows = false;
        let mut stream = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_many(conn);
        while let Some(item) = stream.try_next().await? {
            match item {
                Either::Left(done) => {
                    if counting && !returned_rows {
                        rows += done.rows_affected();
                    }
                    returned_rows = false;
                }
                Either::Right(row) => {
                    returned_rows = true;
                    if row.try_column(MIGRATION_START).is_ok() {
                        (counting, rows) = (true, 0);
                    } else if let Ok(version) = row.try_get::<String, _>(MARK) {
                        counting = false;
                        marks.push(Mark {
                            version: version.parse().ok(),
                            at_us: row
                                .try_get::<String, _>("at_us")?
                                .parse()
                                .unwrap_or_default(),
                            locks: row
                                .try_get::<Option<String>, _>("locks")?
                                .map(|l| serde_json::from_str(&l).unwrap_or_default()),
                            rows: std::mem::take(&mut rows),
                        });
                    }
                }
            }
        }
        let figures = self.one_batch(&marks);
        self.batches.extend(figures);
        Ok(())
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

    /// Every migration's figures, in version order.
    fn finish(self) -> Vec<MigrationFigures> {
        let mut figures = self.alone_figures();
        figures.extend(self.batches);
        figures.sort_by(|a, b| a.version.cmp(&b.version));
        figures
    }

    /// Migrations of one committed batch, from its marks (begin, one per migration, end).
    fn one_batch(&self, marks: &[Mark]) -> Vec<MigrationFigures> {
        let Some((end, marks)) = marks.split_last() else {
            return Vec::new();
        };
        let mut figures: Vec<MigrationFigures> = marks
            .windows(2)
            .filter_map(|pair| {
                Some(MigrationFigures {
                    version: pair[1].version.clone()?,
                    duration_ms: micros_to_ms(pair[1].at_us - pair[0].at_us),
                    lock: None,
                    rows: pair[1].rows,
                })
            })
            .collect();
        // Each lock reading, with the migrations (by index) since the previous one.
        let mut seen: BTreeSet<(i64, String)> = BTreeSet::new();
        let mut since = 0;
        let mut taken: Vec<BTreeSet<(i64, String)>> = vec![BTreeSet::new(); figures.len()];
        for (i, mark) in marks.iter().skip(1).chain([end]).enumerate() {
            let Some(locks) = &mark.locks else { continue };
            let new: BTreeSet<_> = locks.difference(&seen).cloned().collect();
            if let Some(first) = taken.get_mut(since.min(figures.len().saturating_sub(1))) {
                first.extend(new.iter().cloned());
            }
            seen.extend(new);
            since = i + 1;
        }
        for (i, figure) in figures.iter_mut().enumerate() {
            // Held from the start of the migration that took it until the COMMIT.
            let held =
                Duration::from_micros(u64::try_from(end.at_us - marks[i].at_us).unwrap_or(0));
            figure.lock = self.strongest(&taken[i], held);
        }
        figures
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

fn micros_to_ms(us: i64) -> u64 {
    u64::try_from(us / 1000).unwrap_or(0)
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

    fn probe_of(existing: &[(i64, &str)]) -> Probe {
        Probe {
            scratch: Secret::new("postgres://localhost/scratch"),
            client: "c".to_owned(),
            pid: 1,
            existing: existing
                .iter()
                .map(|(o, n)| (*o, (*n).to_owned()))
                .collect(),
            names: existing.iter().map(|(_, n)| n.to_lowercase()).collect(),
            batches: Vec::new(),
            alone: Vec::new(),
        }
    }

    fn mark(version: Option<&str>, at_ms: i64, locks: Option<&[(i64, &str)]>, rows: u64) -> Mark {
        Mark {
            version: version.map(|v| v.parse().expect("version")),
            at_us: at_ms * 1000,
            locks: locks.map(|l| l.iter().map(|(o, m)| (*o, (*m).to_owned())).collect()),
            rows,
        }
    }

    #[test]
    fn only_a_migration_naming_an_existing_table_reads_the_locks() {
        let probe = probe_of(&[(1, "accounts"), (2, "Audit Log")]);
        assert!(probe.names_an_existing_table("ALTER TABLE public.Accounts ADD x int"));
        assert!(probe.names_an_existing_table("update \"audit log\" set a = 1"));
        assert!(!probe.names_an_existing_table("create table accounts_archive (id int)"));
        assert!(!probe_of(&[]).names_an_existing_table("alter table accounts add x int"));
    }

    #[test]
    fn a_lock_first_seen_at_the_end_is_put_on_the_earliest_migration_since_the_last_reading() {
        let probe = probe_of(&[(1, "accounts"), (2, "members")]);
        let marks = [
            mark(None, 0, None, 0),
            // Names `members`: read, and its lock is its own.
            mark(
                Some("2025_01_01_001"),
                100,
                Some(&[(2, "RowExclusiveLock")]),
                5,
            ),
            // Two migrations naming no existing table (one reached `accounts` through a
            // function): the end's reading finds a lock neither was read for.
            mark(Some("2025_01_01_002"), 300, None, 0),
            mark(Some("2025_01_01_003"), 600, None, 2),
            mark(
                None,
                1000,
                Some(&[(2, "RowExclusiveLock"), (1, "AccessExclusiveLock")]),
                0,
            ),
        ];
        let figures = probe.one_batch(&marks);
        assert_eq!(figures.len(), 3);
        assert_eq!(
            (
                figures[0].duration_ms,
                figures[1].duration_ms,
                figures[2].duration_ms
            ),
            (100, 200, 300)
        );
        assert_eq!((figures[0].rows, figures[2].rows), (5, 2));
        let first = figures[0].lock.as_ref().expect("members");
        assert_eq!(
            (first.tables.clone(), first.held_ms),
            (vec!["members".to_owned()], 1000)
        );
        let second = figures[1]
            .lock
            .as_ref()
            .expect("accounts, on the earliest candidate");
        assert_eq!(second.mode, LockMode::AccessExclusive);
        assert_eq!(
            (second.tables.clone(), second.held_ms),
            (vec!["accounts".to_owned()], 900)
        );
        assert!(figures[2].lock.is_none());
    }
}
