//! Migrating under the session's lock. Guards run first (no unfinished rows, checksums
//! match, no applied version missing on disk) and refuse before anything changes. When
//! every pending migration allows it, the whole run — SQL and bookkeeping rows — is one
//! transaction sent as one batch, so the database reaches the target or stays where it
//! was, at close to the cost of `psql -1 -f`. A `no-transaction` migration splits the
//! run and is recorded `in_progress` before it starts.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

use super::PgError;
use super::lock::Session;
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

/// A rehearsal's timings: each migration and verify file, run and rolled back.
#[derive(Debug, Clone, Default)]
pub struct Rehearsal {
    pub timings: Vec<(Version, Duration)>,
    pub skipped: Vec<(Version, String)>,
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
    /// The guards every write run passes first. Returns the latest rows.
    pub async fn guard_clean(&mut self, catalog: &Catalog) -> Result<Vec<Row>, PgError> {
        let rows = versions::latest_rows(&mut self.conn, &self.client).await?;
        for row in &rows {
            if row.status == Status::Failed.as_str() || row.status == Status::InProgress.as_str() {
                return Err(PgError::refused(
                    &self.client,
                    format!(
                        "migration {} is `{}` after an interrupted run; inspect the database, then `steward repair {} --version {} --mark applied|rolled-back`",
                        row.version, row.status, self.client, row.version
                    ),
                ));
            }
            if row.status != Status::Applied.as_str() {
                continue;
            }
            let Some(migration) = catalog.get(&row.version) else {
                return Err(PgError::refused(
                    &self.client,
                    format!(
                        "the database has version {} applied, which is not in the migrations folder {}",
                        row.version,
                        catalog.dir.display()
                    ),
                ));
            };
            if let Some(recorded) = &row.checksum
                && *recorded != migration.up.checksum
            {
                return Err(PgError::refused(
                    &self.client,
                    format!(
                        "applied migration {} was edited since it ran: recorded checksum {recorded}, {} now has {}; never edit an applied migration, add a new one",
                        row.version,
                        migration.up.path.display(),
                        migration.up.checksum
                    ),
                ));
            }
        }
        Ok(rows)
    }

    pub async fn latest_rows(&mut self) -> Result<Vec<Row>, PgError> {
        versions::latest_rows(&mut self.conn, &self.client).await
    }

    /// Record a migration as applied without running it (`adopt --baseline`), with its
    /// checksum, so later runs can tell when its file is edited.
    pub async fn record_baseline(
        &mut self,
        m: &Migration,
        actor: Actor<'_>,
    ) -> Result<(), PgError> {
        versions::insert(
            &mut self.conn,
            &self.client,
            NewRow {
                version: &m.version,
                name: Some(&m.name),
                checksum: Some(&m.up.checksum),
                status: Status::Applied,
                execution_ms: None,
                actor: actor.name,
                revision: actor.revision,
            },
        )
        .await
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
        let rows = self.guard_clean(catalog).await?;
        let from = versions::current(&rows);
        let pending: Vec<&Migration> = catalog.between(from.as_ref(), to);
        let mut report = MigrateReport {
            from: from.clone(),
            to: Some(to.clone()),
            ..MigrateReport::default()
        };
        self.run_in_batches(&pending, Direction::Up, actor, &mut report)
            .await?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Run `migrations` in order, in `direction`: consecutive transactional ones in one
    /// batch (one transaction), a no-transaction one alone; each version run goes into
    /// `report`.
    async fn run_in_batches(
        &mut self,
        migrations: &[&Migration],
        direction: Direction,
        actor: Actor<'_>,
        report: &mut MigrateReport,
    ) -> Result<(), PgError> {
        let mut batch: Vec<&Migration> = Vec::new();
        for &migration in migrations {
            let (script, alone) = match direction {
                Direction::Up => (&migration.up, migration.no_transaction),
                Direction::Down => {
                    let down = migration.down.as_ref().unwrap_or(&migration.up);
                    (down, has_no_transaction(down))
                }
            };
            if alone {
                self.run_batch(&batch, direction, actor).await?;
                report
                    .versions
                    .extend(batch.drain(..).map(|m| m.version.clone()));
                self.run_alone(migration, script, direction, actor).await?;
                report.versions.push(migration.version.clone());
            } else {
                batch.push(migration);
            }
        }
        self.run_batch(&batch, direction, actor).await?;
        report
            .versions
            .extend(batch.iter().map(|m| m.version.clone()));
        Ok(())
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
        let rows = self.guard_clean(catalog).await?;
        let from = versions::current(&rows);
        let mut undo: Vec<&Migration> = catalog
            .migrations
            .iter()
            .filter(|m| {
                to.is_none_or(|to| &m.version > to)
                    && from.as_ref().is_some_and(|f| &m.version <= f)
            })
            .filter(|m| {
                rows.iter()
                    .any(|r| r.version == m.version && r.status == Status::Applied.as_str())
            })
            .collect();
        undo.reverse();
        if let Some(missing) = undo.iter().find(|m| m.down.is_none()) {
            return Err(PgError::refused(
                &self.client,
                format!(
                    "migration {} ({}) has no .down.sql, so it cannot be rolled back; restore a backup instead (`steward restore {} --backup latest --yes`)",
                    missing.version, missing.name, self.client
                ),
            ));
        }
        let mut report = MigrateReport {
            from,
            to: to.cloned(),
            ..MigrateReport::default()
        };
        self.run_in_batches(&undo, Direction::Down, actor, &mut report)
            .await?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Run the pending migrations and their verify files in a transaction, then roll it
    /// back: errors and timings, and no change to data.
    pub async fn rehearse(
        &mut self,
        catalog: &Catalog,
        to: &Version,
    ) -> Result<Rehearsal, PgError> {
        let rows = self.guard_clean(catalog).await?;
        let from = versions::current(&rows);
        let mut rehearsal = Rehearsal::default();
        self.exec("BEGIN").await?;
        let result = async {
            for m in catalog.between(from.as_ref(), to) {
                if m.no_transaction {
                    rehearsal.skipped.push((
                        m.version.clone(),
                        "no-transaction migrations cannot run inside a rehearsal transaction"
                            .to_owned(),
                    ));
                    continue;
                }
                let t0 = Instant::now();
                self.exec_script(m, &m.up).await?;
                if let Some(verify) = &m.verify {
                    super::verify::run_verify_file(&mut self.conn, &self.client, m, verify).await?;
                }
                rehearsal.timings.push((m.version.clone(), t0.elapsed()));
            }
            Ok::<_, PgError>(())
        }
        .await;
        self.exec("ROLLBACK").await?;
        result.map(|()| rehearsal)
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
        Ok(undone)
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

    async fn exec(&mut self, sql: &str) -> Result<(), PgError> {
        sqlx::raw_sql(sql)
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
        let mut sql = String::from("BEGIN;\n");
        for m in batch {
            let (script, status) = direction.script(m);
            let _ = write!(
                sql,
                "SELECT set_config('steward.t', clock_timestamp()::text, true);\n{}\n;\n\
                 INSERT INTO system_versions (version, applied_at, status, name, checksum, execution_ms, applied_by, fleet_revision) \
                 VALUES ({}, clock_timestamp(), {}, {}, {}, (extract(epoch FROM clock_timestamp() - current_setting('steward.t')::timestamptz) * 1000)::bigint, {}, {});\n",
                script.sql,
                quote(m.version.as_str()),
                quote(status.as_str()),
                quote(&m.name),
                opt(direction.checksum(m)),
                quote(actor.name),
                opt(actor.revision),
            );
        }
        sql.push_str("COMMIT;");
        if let Err(err) = sqlx::raw_sql(&sql).execute(&mut self.conn).await {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
            // Find out exactly which file and line failed: replay one migration at a time
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
            let (script, _) = direction.script(m);
            if let Err(err) = self.exec_script(m, script).await {
                found = Some(err);
                break;
            }
        }
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
        found
    }

    /// Run one script; an error names the file and the line.
    async fn exec_script(&mut self, m: &Migration, script: &Script) -> Result<(), PgError> {
        sqlx::raw_sql(&script.sql)
            .execute(&mut self.conn)
            .await
            .map_err(|err| self.migration_error(m, script, 0, &script.sql, err))?;
        Ok(())
    }

    fn migration_error(
        &self,
        m: &Migration,
        script: &Script,
        line_offset: usize,
        sql: &str,
        err: sqlx::Error,
    ) -> PgError {
        let (line, message) = match &err {
            sqlx::Error::Database(db) => {
                let line = db
                    .try_downcast_ref::<PgDatabaseError>()
                    .and_then(|pg| match pg.position() {
                        Some(PgErrorPosition::Original(pos)) => Some(
                            1 + sql
                                .chars()
                                .take(pos.saturating_sub(1))
                                .filter(|&c| c == '\n')
                                .count(),
                        ),
                        _ => None,
                    })
                    .unwrap_or(1);
                (line + line_offset, db.message().to_owned())
            }
            other => (1 + line_offset, other.to_string()),
        };
        PgError::Migration {
            client: self.client.clone(),
            version: m.version.clone(),
            file: script.path.clone(),
            line,
            message,
        }
    }

    /// A migration that cannot run in a transaction: recorded `in_progress` first, each
    /// statement on its own, then `applied` (or `failed`). A crash in the middle leaves
    /// the `in_progress` row, and preflight refuses until `steward repair`.
    async fn run_alone(
        &mut self,
        m: &Migration,
        script: &Script,
        direction: Direction,
        actor: Actor<'_>,
    ) -> Result<(), PgError> {
        let (_, done) = direction.script(m);
        let row = |status| NewRow {
            version: &m.version,
            name: Some(&m.name),
            checksum: direction.checksum(m),
            status,
            execution_ms: None,
            actor: actor.name,
            revision: actor.revision,
        };
        versions::insert(&mut self.conn, &self.client, row(Status::InProgress)).await?;
        let started = Instant::now();
        for statement in split::split(&script.sql) {
            if let Err(err) = sqlx::raw_sql(&statement.sql).execute(&mut self.conn).await {
                let error =
                    self.migration_error(m, script, statement.line - 1, &statement.sql, err);
                versions::insert(&mut self.conn, &self.client, row(Status::Failed)).await?;
                return Err(error);
            }
        }
        let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        versions::insert(
            &mut self.conn,
            &self.client,
            NewRow {
                execution_ms: Some(ms),
                ..row(done)
            },
        )
        .await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

impl Direction {
    fn script(self, m: &Migration) -> (&Script, Status) {
        match self {
            Direction::Up => (&m.up, Status::Applied),
            Direction::Down => (m.down.as_ref().unwrap_or(&m.up), Status::RolledBack),
        }
    }

    /// The checksum recorded is always the `.up.sql`'s: it identifies the migration.
    fn checksum(self, m: &Migration) -> Option<&str> {
        Some(&m.up.checksum)
    }
}

fn has_no_transaction(script: &Script) -> bool {
    crate::migrations::has_no_transaction_directive(&script.sql)
}
