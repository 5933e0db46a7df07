//! A rehearsal's figures as plan input, and the blocks they raise: a rehearsal that
//! failed, or one that held an ACCESS EXCLUSIVE lock on an existing table longer than
//! `policy.maxLockTime`. Pure: the rehearsal itself runs in `postgres::rehearse`.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::Block;
use crate::migrations::Version;

/// Postgres's table lock modes, weakest first (the order of the conflict table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    /// From `pg_locks.mode` (`AccessExclusiveLock`).
    pub fn from_pg(mode: &str) -> Option<LockMode> {
        Some(match mode {
            "AccessShareLock" => LockMode::AccessShare,
            "RowShareLock" => LockMode::RowShare,
            "RowExclusiveLock" => LockMode::RowExclusive,
            "ShareUpdateExclusiveLock" => LockMode::ShareUpdateExclusive,
            "ShareLock" => LockMode::Share,
            "ShareRowExclusiveLock" => LockMode::ShareRowExclusive,
            "ExclusiveLock" => LockMode::Exclusive,
            "AccessExclusiveLock" => LockMode::AccessExclusive,
            _ => return None,
        })
    }

    /// What the lock stops other sessions from doing, for readers who do not know the
    /// conflict table by heart.
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessShare | LockMode::RowShare | LockMode::RowExclusive => {
                "blocks only DDL"
            }
            LockMode::ShareUpdateExclusive => "blocks DDL and VACUUM",
            LockMode::Share | LockMode::ShareRowExclusive | LockMode::Exclusive => "blocks writes",
            LockMode::AccessExclusive => "blocks reads and writes",
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        })
    }
}

/// The strongest lock a migration took on tables that existed before the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockTaken {
    pub mode: LockMode,
    pub tables: Vec<String>,
    /// From the moment the migration started until the lock was released (in a batch,
    /// its transaction's COMMIT: later migrations of the batch count too).
    pub held_ms: u64,
}

/// One migration's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationFigures {
    pub version: Version,
    pub duration_ms: u64,
    /// None: no lock on a table that existed before the run.
    pub lock: Option<LockTaken>,
    /// Rows inserted, updated and deleted.
    pub rows: u64,
}

/// Where a rehearsal failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RehearsalFailure {
    pub version: Option<Version>,
    /// `path:line` of the failing statement, when one failed.
    pub at: Option<String>,
    /// The failing statement's first line.
    pub statement: Option<String>,
    pub message: String,
}

impl fmt::Display for RehearsalFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(version) = &self.version {
            write!(f, "migration {version} ")?;
        }
        if let Some(at) = &self.at {
            write!(f, "failed at {at}")?;
        } else {
            f.write_str("failed")?;
        }
        if let Some(statement) = &self.statement {
            write!(f, " in `{statement}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What a rehearsal on a scratch copy found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rehearsal {
    /// The scratch database it ran in (dropped since).
    pub scratch: String,
    /// The backup the copy was restored from.
    pub backup: String,
    pub from: Option<Version>,
    pub to: Version,
    /// Migrations that ran, in order, with their figures.
    pub migrations: Vec<MigrationFigures>,
    pub failure: Option<RehearsalFailure>,
    /// Restore, migrations and verify, wall clock.
    pub elapsed_ms: u64,
}

impl Rehearsal {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The longest ACCESS EXCLUSIVE hold, and by which migration.
    pub fn longest_exclusive(&self) -> Option<(&MigrationFigures, &LockTaken)> {
        self.migrations
            .iter()
            .filter_map(|m| m.lock.as_ref().map(|l| (m, l)))
            .filter(|(_, l)| l.mode == LockMode::AccessExclusive)
            .max_by_key(|(_, l)| l.held_ms)
    }
}

impl Rehearsal {
    /// One line: where it ran and how it went.
    pub fn headline(&self) -> String {
        let total: u64 = self.migrations.iter().map(|m| m.duration_ms).sum();
        format!(
            "rehearsed on a scratch copy ({}, dropped) of backup {}: {} migration(s) in {} ({} with restore and verify), {}",
            self.scratch,
            self.backup,
            self.migrations.len(),
            super::millis(total),
            super::millis(self.elapsed_ms),
            if self.passed() { "passed" } else { "FAILED" }
        )
    }
}

impl MigrationFigures {
    /// The lock cell: `ACCESS EXCLUSIVE on invoices (blocks reads and writes)`.
    pub fn lock_text(&self) -> String {
        match &self.lock {
            None => "none on existing tables".to_owned(),
            Some(lock) => format!(
                "{} on {} ({})",
                lock.mode,
                lock.tables.join(", "),
                lock.mode.blocks()
            ),
        }
    }

    pub fn held_text(&self) -> String {
        self.lock
            .as_ref()
            .map_or("—".to_owned(), |l| super::millis(l.held_ms))
    }
}

impl fmt::Display for MigrationFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}, lock {}",
            self.version,
            super::millis(self.duration_ms),
            self.lock_text()
        )?;
        if let Some(lock) = &self.lock {
            write!(f, " held {}", super::millis(lock.held_ms))?;
        }
        write!(f, ", {} row(s)", self.rows)
    }
}

/// The blocks a rehearsal raises under the client's `maxLockTime`.
pub fn blocks(rehearsal: &Rehearsal, max_lock_time: Option<Duration>) -> Vec<Block> {
    let mut blocks = Vec::new();
    if let Some(failure) = &rehearsal.failure {
        blocks.push(Block::RehearsalFailed {
            failure: failure.clone(),
        });
    }
    if let Some(limit) = max_lock_time {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        for m in &rehearsal.migrations {
            if let Some(lock) = m
                .lock
                .as_ref()
                .filter(|l| l.mode == LockMode::AccessExclusive && l.held_ms > limit_ms)
            {
                blocks.push(Block::LockTooLong {
                    version: m.version.clone(),
                    tables: lock.tables.clone(),
                    held_ms: lock.held_ms,
                    limit_ms,
                });
            }
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(version: &str, lock: Option<(LockMode, u64)>) -> MigrationFigures {
        MigrationFigures {
            version: version.parse().expect("version"),
            duration_ms: 10,
            lock: lock.map(|(mode, held_ms)| LockTaken {
                mode,
                tables: vec!["invoices".to_owned()],
                held_ms,
            }),
            rows: 0,
        }
    }

    fn rehearsal(migrations: Vec<MigrationFigures>) -> Rehearsal {
        Rehearsal {
            scratch: "steward_rehearsal_acme_0".to_owned(),
            backup: "b1".to_owned(),
            from: None,
            to: "2024_01_01_002".parse().expect("version"),
            migrations,
            failure: None,
            elapsed_ms: 100,
        }
    }

    #[test]
    fn an_exclusive_lock_held_longer_than_the_limit_blocks_naming_the_table() {
        let r = rehearsal(vec![
            figures("2024_01_01_001", Some((LockMode::AccessExclusive, 2500))),
            figures(
                "2024_01_01_002",
                Some((LockMode::ShareUpdateExclusive, 9000)),
            ),
        ]);
        let found = blocks(&r, Some(Duration::from_secs(2)));
        assert_eq!(found.len(), 1, "{found:?}");
        let text = found[0].to_string();
        assert!(
            text.contains("2024_01_01_001") && text.contains("invoices"),
            "{text}"
        );
        assert!(blocks(&r, Some(Duration::from_secs(3))).is_empty());
        assert!(blocks(&r, None).is_empty());
    }

    #[test]
    fn a_failed_rehearsal_blocks_with_the_statement_and_line() {
        let mut r = rehearsal(vec![]);
        r.failure = Some(RehearsalFailure {
            version: Some("2024_01_01_002".parse().expect("version")),
            at: Some("migrations/2024_01_01_002_x.up.sql:3".to_owned()),
            statement: Some(
                "ALTER TABLE invoices ADD CONSTRAINT positive CHECK (total > 0)".to_owned(),
            ),
            message: "check constraint \"positive\" is violated by some row".to_owned(),
        });
        let text = blocks(&r, None)[0].to_string();
        assert!(text.contains("2024_01_01_002_x.up.sql:3"), "{text}");
        assert!(text.contains("ALTER TABLE invoices"), "{text}");
    }
}
