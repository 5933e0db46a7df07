//! What a migration run will execute, decided before it starts: the guards on the
//! recorded rows, the migrations between the current version and the target in the order
//! they run, and the refusals that must come before anything runs (a downgrade through a
//! migration without `.down.sql`, transaction control in a script steward runs inside its
//! own transaction). Pure, so `migrate --dry-run` and the real run reach the same answer
//! from the same rows.

use super::PgError;
use super::versions::{self, Row, Status};
use crate::migrations::lint::{self, Finding};
use crate::migrations::{Catalog, Migration, Script, Version};

/// Which way a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `.up.sql` files in version order; each recorded `applied`.
    Up,
    /// `.down.sql` files in reverse order; each recorded `rolled_back`.
    Down,
}

impl Direction {
    /// The file a run in this direction executes. A down run only ever holds migrations
    /// with a `.down.sql` (see [`down`]); the `.up.sql` stands in for the impossible case.
    pub fn script(self, m: &Migration) -> &Script {
        match self {
            Direction::Up => &m.up,
            Direction::Down => m.down.as_ref().unwrap_or(&m.up),
        }
    }

    /// The status a migration is recorded with once its script committed.
    pub fn done(self) -> Status {
        match self {
            Direction::Up => Status::Applied,
            Direction::Down => Status::RolledBack,
        }
    }

    /// Whether the script runs inside steward's transaction (no `no-transaction` directive).
    pub fn transactional(self, m: &Migration) -> bool {
        !crate::migrations::has_no_transaction_directive(&self.script(m).sql)
    }
}

/// The migrations one run executes, in order.
#[derive(Debug, Clone)]
pub struct RunPath<'c> {
    pub direction: Direction,
    pub from: Option<Version>,
    pub to: Option<Version>,
    pub migrations: Vec<&'c Migration>,
}

impl RunPath<'_> {
    pub fn versions(&self) -> Vec<Version> {
        self.migrations.iter().map(|m| m.version.clone()).collect()
    }
}

/// The guards every write run passes first: no `failed` or `in_progress` row, no applied
/// version missing on disk, no applied migration edited since it ran. Judged by
/// `plan::row_blocks`, so the refusal reads as the plan's block does.
pub fn check_rows(client: &str, catalog: &Catalog, rows: &[Row]) -> Result<(), PgError> {
    let (applied, unfinished) = versions::split(rows);
    match crate::plan::row_blocks(client, catalog, &applied, &unfinished)
        .into_iter()
        .next()
    {
        Some(block) => Err(PgError::refused(client, block.to_string())),
        None => Ok(()),
    }
}

/// The run that brings the database from its recorded rows to `to`, up or down.
pub fn towards<'c>(
    client: &str,
    catalog: &'c Catalog,
    rows: &[Row],
    to: &Version,
) -> Result<RunPath<'c>, PgError> {
    let current = versions::current(rows);
    if current.as_ref().is_none_or(|c| c <= to) {
        up(client, catalog, rows, to)
    } else {
        down(client, catalog, rows, Some(to))
    }
}

/// Every migration above the current version up to `to`.
pub fn up<'c>(
    client: &str,
    catalog: &'c Catalog,
    rows: &[Row],
    to: &Version,
) -> Result<RunPath<'c>, PgError> {
    check_rows(client, catalog, rows)?;
    let from = versions::current(rows);
    let path = RunPath {
        direction: Direction::Up,
        migrations: catalog.between(from.as_ref(), to),
        from,
        to: Some(to.clone()),
    };
    refuse_transaction_control(client, &path)?;
    Ok(path)
}

/// Every applied migration above `to` (all of them for `None`), newest first. Refuses,
/// naming it, when one has no `.down.sql`.
pub fn down<'c>(
    client: &str,
    catalog: &'c Catalog,
    rows: &[Row],
    to: Option<&Version>,
) -> Result<RunPath<'c>, PgError> {
    check_rows(client, catalog, rows)?;
    let from = versions::current(rows);
    let applied = |m: &Migration| {
        rows.iter()
            .any(|r| r.version == m.version && r.status == Status::Applied.as_str())
    };
    let mut undo: Vec<&Migration> = catalog
        .migrations
        .iter()
        .filter(|m| {
            to.is_none_or(|to| &m.version > to) && from.as_ref().is_some_and(|f| &m.version <= f)
        })
        .filter(|m| applied(m))
        .collect();
    undo.reverse();
    if let Some(missing) = undo.iter().find(|m| m.down.is_none()) {
        return Err(PgError::refused(
            client,
            format!(
                "migration {} ({}) has no .down.sql, so it cannot be rolled back; restore a backup instead (`steward restore {client} --backup latest --yes`)",
                missing.version, missing.name
            ),
        ));
    }
    let path = RunPath {
        direction: Direction::Down,
        from,
        to: to.cloned(),
        migrations: undo,
    };
    refuse_transaction_control(client, &path)?;
    Ok(path)
}

/// The transaction control in the scripts `path` runs inside steward's transaction.
pub fn transaction_control(path: &RunPath<'_>) -> Vec<Finding> {
    path.migrations
        .iter()
        .flat_map(|m| lint::transaction_control(path.direction.script(m)))
        .collect()
}

fn refuse_transaction_control(client: &str, path: &RunPath<'_>) -> Result<(), PgError> {
    let findings = transaction_control(path);
    if findings.is_empty() {
        Ok(())
    } else {
        Err(PgError::TransactionControl {
            client: client.to_owned(),
            findings,
        })
    }
}
