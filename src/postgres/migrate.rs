//! Migrating under the session's lock. What runs, and every refusal, is decided first
//! (`path`) and refuses before anything changes. When every pending migration allows it,
//! the whole run — SQL and bookkeeping rows — is one transaction sent as one batch, so
//! the database reaches the target or stays where it was, at close to the cost of
//! `psql -1 -f`. A `no-transaction` migration splits the run and is recorded
//! `in_progress` before it starts; an error then says which versions committed.

use sqlx::AssertSqlSafe;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

use super::PgError;
use super::drift::Reason;
use super::lock::Session;
use super::path::{self, Direction, RunPath};
use super::progress::{Progress, Stopped};
use super::rehearse::Probe;
use super::versions::{self, NewRow, Row, Status};
use crate::migrations::{Catalog, Migration, Script, Version, split};

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct MigrateReport {
    pub from: Option<Version>,
    pub to: Option<Version>,
    pub versions: Vec<Version>,
    pub elapsed: Duration,
}

/// Who and what a run is recorded under.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub revision: Option<&'a str>,
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn opt(text: Option<&str>) -> String {
    text.map_or("NULL".to_owned(), quote)
}

impl Session {
    /// The guards every write run passes first (see [`path::check_rows`]). Returns the
    /// latest rows.
    pub async fn guard_clean(&mut self, catalog: &Catalog) -> Result<Vec<Row>, PgError> {
        let rows = versions::latest_rows(&mut self.conn, &self.client).await?;
        path::check_rows(&self.client, catalog, &rows)?;
        Ok(rows)
    }

    pub async fn latest_rows(&mut self) -> Result<Vec<Row>, PgError> {
        versions::latest_rows(&mut self.conn, &self.client).await
    }

    pub async fn current_version(&mut self) -> Result<Option<Version>, PgError> {
        let rows = versions::latest_rows(&mut self.conn, &self.client).await?;
        Ok(versions::current(&rows))
    }

    /// Apply every migration above the current version up to `to`.
    pub async fn migrate_up(
        &mut self,
        catalog: &Catalog,
        to: &Version,
        actor: Actor<'_>,
    ) -> Result<MigrateReport, PgError> {
        let started = Instant::now();
        let rows = self.latest_rows().await?;
        let path = path::up(&self.client, catalog, &rows, to)?;
        self.run_path(&path, actor, started).await
    }

    /// Run `.down.sql` files in reverse from the current version down to `to`, marking
    /// each `rolled_back`. Refuses, naming it, when one has no `.down.sql`.
    pub async fn migrate_down(
        &mut self,
        catalog: &Catalog,
        to: Option<&Version>,
        actor: Actor<'_>,
    ) -> Result<MigrateReport, PgError> {
        let started = Instant::now();
        let rows = self.latest_rows().await?;
        let path = path::down(&self.client, catalog, &rows, to)?;
        self.run_path(&path, actor, started).await
    }

    /// Run a path computed from rows read under this session's lock.
    pub async fn run(
        &mut self,
        path: &RunPath<'_>,
        actor: Actor<'_>,
    ) -> Result<MigrateReport, PgError> {
        self.run_path(path, actor, Instant::now()).await
    }

    /// Run `path` in order: consecutive transactional scripts in one batch (one
    /// transaction), a no-transaction one alone. A failure says which versions had
    /// committed by then, which stopped part-way and which did not run.
    async fn run_path(
        &mut self,
        path: &RunPath<'_>,
        actor: Actor<'_>,
        started: Instant,
    ) -> Result<MigrateReport, PgError> {
        let direction = path.direction;
        let mut report = MigrateReport {
            from: path.from.clone(),
            to: path.to.clone(),
            ..MigrateReport::default()
        };
        let progress = |committed: &[Version], stopped, rest: &[&Migration]| Progress {
            direction,
            committed: committed.to_vec(),
            stopped,
            not_committed: rest.iter().map(|m| m.version.clone()).collect(),
        };
        let mut batch_start = 0;
        for (i, &migration) in path.migrations.iter().enumerate() {
            if direction.transactional(migration) {
                continue;
            }
            let batch = &path.migrations[batch_start..i];
            if let Err(err) = self.run_batch(batch, direction, actor).await {
                let rest = &path.migrations[batch_start..];
                return Err(err.with_progress(progress(&report.versions, None, rest)));
            }
            report
                .versions
                .extend(batch.iter().map(|m| m.version.clone()));
            if let Err((err, statements_committed)) =
                self.run_alone(migration, direction, actor).await
            {
                let stopped = Some(Stopped {
                    version: migration.version.clone(),
                    statements_committed,
                });
                let rest = &path.migrations[i + 1..];
                return Err(err.with_progress(progress(&report.versions, stopped, rest)));
            }
            report.versions.push(migration.version.clone());
            batch_start = i + 1;
        }
        let batch = &path.migrations[batch_start..];
        if let Err(err) = self.run_batch(batch, direction, actor).await {
            return Err(err.with_progress(progress(&report.versions, None, batch)));
        }
        report
            .versions
            .extend(batch.iter().map(|m| m.version.clone()));
        if !report.versions.is_empty() {
            self.record_schema(report.to.as_ref(), Reason::Migrate, actor)
                .await?;
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Restore `file` (the guide's "restore from backup"), check the identity again, and
    /// give every version the restore undid a `rolled_back` row. Returns those versions.
    pub async fn restore(
        &mut self,
        url: &crate::secret::Secret,
        file: &std::path::Path,
        pinned: Option<uuid::Uuid>,
        catalog: &Catalog,
        actor: Actor<'_>,
    ) -> Result<Vec<Version>, PgError> {
        let before = self.latest_rows().await?;
        self.check_dump_identity(file).await?;
        super::backup::restore(&self.client, url, file).await?;
        self.check_identity(pinned).await?;
        versions::ensure_table(&mut self.conn, &self.client).await?;
        let after = self.latest_rows().await?;
        let applied = Status::Applied.as_str();
        let mut undone = Vec::new();
        for row in before.iter().filter(|r| {
            r.status == applied
                && !after
                    .iter()
                    .any(|a| a.version == r.version && a.status == applied)
        }) {
            let name = catalog.get(&row.version).map(|m| m.name.clone());
            self.mark(&row.version, Status::RolledBack, name.as_deref(), actor)
                .await?;
            undone.push(row.version.clone());
        }
        let now = self.current_version().await?;
        self.record_schema(now.as_ref(), Reason::Restore, actor)
            .await?;
        Ok(undone)
    }

    /// Whose dump is this? Read from the archive itself before a byte is written: a dump
    /// of another client (or of another database that carries this client's name) is
    /// refused, and the database is left as it is.
    async fn check_dump_identity(&mut self, file: &std::path::Path) -> Result<(), PgError> {
        check_dump_identity(&mut self.conn, &self.client, file).await
    }

    /// Record the live schema as the reference drift is measured against.
    pub async fn record_schema(
        &mut self,
        version: Option<&Version>,
        reason: Reason,
        actor: Actor<'_>,
    ) -> Result<(), PgError> {
        super::drift::record(&mut self.conn, &self.client, version, reason, actor.name).await
    }

    /// Record a version's status by hand (`steward repair`, or after a restore).
    pub async fn mark(
        &mut self,
        version: &Version,
        status: Status,
        name: Option<&str>,
        actor: Actor<'_>,
    ) -> Result<(), PgError> {
        versions::insert(
            &mut self.conn,
            &self.client,
            NewRow {
                version,
                name,
                checksum: None,
                status,
                execution_ms: None,
                actor: actor.name,
                revision: actor.revision,
            },
        )
        .await
    }

    pub(super) async fn exec(&mut self, sql: &str) -> Result<(), PgError> {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut self.conn)
            .await
            .map_err(PgError::query(&self.client, sql.to_owned()))?;
        Ok(())
    }

    /// One batch: `BEGIN; (mark time; SQL; bookkeeping row)*; COMMIT` in one round trip.
    async fn run_batch(
        &mut self,
        batch: &[&Migration],
        direction: Direction,
        actor: Actor<'_>,
    ) -> Result<(), PgError> {
        if batch.is_empty() {
            return Ok(());
        }
        let status = direction.done();
        let mut sql = String::from("BEGIN;\n");
        if let Some(probe) = &self.probe {
            sql.push_str(&probe.batch_begin());
        }
        for m in batch {
            let script = &direction.script(m).sql;
            let _ = write!(
                sql,
                "SELECT set_config('steward.t', clock_timestamp()::text, true) AS {};\n{script}\n;\n",
                super::rehearse::MIGRATION_START,
            );
            if let Some(probe) = &self.probe {
                sql.push_str(&probe.after(&m.version, script));
            }
            let _ = writeln!(
                sql,
                "INSERT INTO system_versions (version, applied_at, status, name, checksum, execution_ms, applied_by, fleet_revision) \
                 VALUES ({}, clock_timestamp(), {}, {}, {}, (extract(epoch FROM clock_timestamp() - current_setting('steward.t')::timestamptz) * 1000)::bigint, {}, {});",
                quote(m.version.as_str()),
                quote(status.as_str()),
                quote(&m.name),
                // The `.up.sql`'s checksum identifies the migration, whichever way it ran.
                quote(&m.up.checksum),
                quote(actor.name),
                opt(actor.revision),
            );
        }
        if let Some(probe) = &self.probe {
            sql.push_str(&probe.batch_end());
        }
        sql.push_str("COMMIT;");
        let ran = match self.probe.as_mut() {
            Some(probe) => probe.run_batch(&mut self.conn, &sql).await,
            None => sqlx::raw_sql(AssertSqlSafe(sql.as_str()))
                .execute(&mut self.conn)
                .await
                .map(drop),
        };
        if let Err(err) = ran {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
            // Find out exactly which file and line failed: replay one statement at a time
            // in a transaction that is rolled back. Only on failure, so it costs nothing
            // on the happy path.
            return Err(self
                .locate_failure(batch, direction)
                .await
                .unwrap_or_else(|| PgError::Query {
                    client: self.client.clone(),
                    context: "running migrations".to_owned(),
                    source: err,
                }));
        }
        Ok(())
    }

    async fn locate_failure(
        &mut self,
        batch: &[&Migration],
        direction: Direction,
    ) -> Option<PgError> {
        sqlx::raw_sql("BEGIN").execute(&mut self.conn).await.ok()?;
        let mut found = None;
        for m in batch {
            if let Err(err) = self.exec_script(m, direction.script(m)).await {
                found = Some(err);
                break;
            }
        }
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
        found
    }

    /// Run one script a statement at a time; an error names the file and the line of the
    /// failing statement (and of the error within it, when Postgres says where).
    async fn exec_script(&mut self, m: &Migration, script: &Script) -> Result<(), PgError> {
        for statement in split::split(&script.sql) {
            self.exec_statement(m, script, &statement).await?;
        }
        Ok(())
    }

    async fn exec_statement(
        &mut self,
        m: &Migration,
        script: &Script,
        statement: &split::Statement,
    ) -> Result<u64, PgError> {
        match sqlx::raw_sql(AssertSqlSafe(statement.sql.as_str()))
            .execute(&mut self.conn)
            .await
        {
            Ok(done) => Ok(done.rows_affected()),
            Err(err) => Err(self.migration_error(m, script, statement, err)),
        }
    }

    fn migration_error(
        &self,
        m: &Migration,
        script: &Script,
        statement: &split::Statement,
        err: sqlx::Error,
    ) -> PgError {
        let (within, message) = match &err {
            sqlx::Error::Database(db) => {
                let position =
                    db.try_downcast_ref::<PgDatabaseError>()
                        .and_then(|pg| match pg.position() {
                            Some(PgErrorPosition::Original(pos)) => Some(pos),
                            _ => None,
                        });
                // Postgres counts characters from 1; the statement's own first line is 0.
                let within = position.map_or(0, |pos| {
                    statement
                        .sql
                        .chars()
                        .take(pos.saturating_sub(1))
                        .filter(|&c| c == '\n')
                        .count()
                });
                (within, db.message().to_owned())
            }
            other => (0, super::explain::explain(other)),
        };
        PgError::Migration {
            client: self.client.clone(),
            version: m.version.clone(),
            file: script.path.clone(),
            line: statement.line + within,
            message,
            progress: None,
        }
    }

    /// A migration that cannot run in a transaction: recorded `in_progress` first, each
    /// statement on its own, then done (or `failed`). A crash in the middle leaves the
    /// `in_progress` row, and preflight refuses until `steward repair`. An error comes
    /// with how many statements had committed.
    async fn run_alone(
        &mut self,
        m: &Migration,
        direction: Direction,
        actor: Actor<'_>,
    ) -> Result<(), (PgError, usize)> {
        let script = direction.script(m);
        let row = |status| NewRow {
            version: &m.version,
            name: Some(&m.name),
            checksum: Some(&m.up.checksum),
            status,
            execution_ms: None,
            actor: actor.name,
            revision: actor.revision,
        };
        versions::insert(&mut self.conn, &self.client, row(Status::InProgress))
            .await
            .map_err(|err| (err, 0))?;
        let started = Instant::now();
        let statements = split::split(&script.sql);
        for (done, statement) in statements.iter().enumerate() {
            let watch = self.probe.as_ref().map(Probe::watch);
            let result = self.exec_statement(m, script, statement).await;
            if let (Some(probe), Some(watch), Ok(rows)) = (self.probe.as_mut(), watch, &result) {
                probe.statement_done(&m.version, watch, *rows).await;
            }
            if let Err(error) = result {
                // The migration's error is the one to show; the `in_progress` row already
                // blocks the next run if this record is lost.
                if let Err(record) =
                    versions::insert(&mut self.conn, &self.client, row(Status::Failed)).await
                {
                    tracing::error!("{record}");
                }
                return Err((error, done));
            }
        }
        let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        versions::insert(
            &mut self.conn,
            &self.client,
            NewRow {
                execution_ms: Some(ms),
                ..row(direction.done())
            },
        )
        .await
        .map_err(|err| (err, statements.len()))
    }
}

/// The dump's own identity (read from the archive) against the live database's: a dump of
/// another client, or of another database, is refused before a byte of it is written.
/// The restore step checks it on its locked session; a request's plan, on the connection
/// it observes with, so a dry run refuses alike.
pub async fn check_dump_identity(
    conn: &mut sqlx::PgConnection,
    client: &str,
    file: &std::path::Path,
) -> Result<(), PgError> {
    let live = super::read_identity(conn, client).await?;
    let dumped = super::backup::identity_in(client, file).await?;
    let refuse = |why: String| {
        Err(PgError::refused(
            client,
            format!("{why}; refusing to restore it (nothing was written)"),
        ))
    };
    match (dumped, live) {
        (Some(d), _) if d.client != client => refuse(format!(
            "the dump belongs to client `{}`, not `{client}`",
            d.client
        )),
        (Some(d), Some(l)) if d.id != l.id => refuse(format!(
            "the dump was taken from another database (identity {}; this database is {})",
            d.id, l.id
        )),
        (None, Some(_)) => refuse(
            "the dump holds no steward identity, so it was not taken from this adopted database"
                .to_owned(),
        ),
        _ => Ok(()),
    }
}
