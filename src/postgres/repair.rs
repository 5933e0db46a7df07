//! `steward repair`: settling a row an interrupted run left `in_progress` or `failed`,
//! and nothing else. Marking an applied version rolled back, or an edited migration
//! applied, would make `system_versions` lie (and recording the edited file's checksum
//! would silence the guard that catches edited migrations), so both are refused.

use std::path::PathBuf;

use super::PgError;
use super::lock::Session;
use super::migrate::Actor;
use super::versions::{self, NewRow, Row, Status};
use crate::migrations::{Catalog, Version};

/// Why a repair was refused. Every variant is a refusal: exit 3, nothing written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairRefusal {
    #[error("version {version} is not in the migrations folder {}", dir.display())]
    NotInCatalog { version: Version, dir: PathBuf },
    #[error("system_versions has no row for {version}; nothing to repair")]
    NoRow { version: Version },
    #[error(
        "{version} is `{status}`, and repair only settles a row an interrupted run left `in_progress` or `failed`; {hint}"
    )]
    NotUnfinished {
        version: Version,
        status: String,
        hint: &'static str,
    },
    #[error(
        "{version} cannot be marked applied: {} was edited since the run that failed (recorded checksum {recorded}, file now {on_disk}), so the database does not hold what the file says; mark it rolled-back, undo by hand what the old text did, then migrate again",
        file.display()
    )]
    Edited {
        version: Version,
        file: PathBuf,
        recorded: String,
        on_disk: String,
    },
}

/// The row a repair of `version` to `mark` settles, or why it is refused. Pure: a dry
/// run and the real run judge the same rows the same way.
pub fn check<'r>(
    catalog: &Catalog,
    rows: &'r [Row],
    version: &Version,
    mark: Status,
) -> Result<&'r Row, RepairRefusal> {
    let Some(migration) = catalog.get(version) else {
        return Err(RepairRefusal::NotInCatalog {
            version: version.clone(),
            dir: catalog.dir.clone(),
        });
    };
    let Some(row) = rows.iter().find(|r| &r.version == version) else {
        return Err(RepairRefusal::NoRow {
            version: version.clone(),
        });
    };
    let unfinished =
        row.status == Status::InProgress.as_str() || row.status == Status::Failed.as_str();
    if !unfinished {
        let hint = if row.status == Status::Applied.as_str() {
            "to undo an applied migration, migrate below it with `steward migrate --to`"
        } else {
            "to apply it, run `steward migrate`"
        };
        return Err(RepairRefusal::NotUnfinished {
            version: version.clone(),
            status: row.status.clone(),
            hint,
        });
    }
    if mark == Status::Applied
        && let Some(recorded) = &row.checksum
        && *recorded != migration.up.checksum
    {
        return Err(RepairRefusal::Edited {
            version: version.clone(),
            file: migration.up.path.clone(),
            recorded: recorded.clone(),
            on_disk: migration.up.checksum.clone(),
        });
    }
    Ok(row)
}

impl Session {
    /// Record `version` as `mark` (applied or rolled back) after an interrupted run, when
    /// [`check`] allows it. Returns the status the row had.
    pub async fn repair(
        &mut self,
        catalog: &Catalog,
        version: &Version,
        mark: Status,
        actor: Actor<'_>,
    ) -> Result<String, PgError> {
        let rows = self.latest_rows().await?;
        let row = check(catalog, &rows, version, mark).map_err(|refusal| PgError::Repair {
            client: self.client.clone(),
            refusal,
        })?;
        let was = row.status.clone();
        let migration = catalog.get(version);
        versions::insert(
            &mut self.conn,
            &self.client,
            NewRow {
                version,
                name: migration.map(|m| m.name.as_str()),
                checksum: migration.map(|m| m.up.checksum.as_str()),
                status: mark,
                execution_ms: None,
                actor: actor.name,
                revision: actor.revision,
            },
        )
        .await?;
        Ok(was)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::{Migration, Script};

    fn version() -> Version {
        "2024_01_01_001".parse().expect("version")
    }

    fn catalog() -> Catalog {
        let up = Script {
            path: PathBuf::from("2024_01_01_001_a.up.sql"),
            sql: "select 1;".to_owned(),
            checksum: "new".to_owned(),
        };
        Catalog {
            dir: PathBuf::from("migrations"),
            migrations: vec![Migration {
                version: version(),
                name: "a".to_owned(),
                up,
                down: None,
                verify: None,
                no_transaction: false,
                impact: Default::default(),
            }],
        }
    }

    fn row(status: Status, checksum: &str) -> Vec<Row> {
        vec![Row {
            version: version(),
            status: status.as_str().to_owned(),
            checksum: Some(checksum.to_owned()),
            applied_at: chrono::Utc::now(),
        }]
    }

    #[test]
    fn a_failed_row_may_be_marked_either_way() {
        let rows = row(Status::Failed, "new");
        for mark in [Status::Applied, Status::RolledBack] {
            assert!(check(&catalog(), &rows, &version(), mark).is_ok());
        }
    }

    #[test]
    fn an_applied_row_is_not_repaired() {
        let rows = row(Status::Applied, "new");
        let refusal =
            check(&catalog(), &rows, &version(), Status::RolledBack).expect_err("refused");
        assert!(
            matches!(refusal, RepairRefusal::NotUnfinished { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn an_edited_migration_is_not_marked_applied_but_may_be_marked_rolled_back() {
        let rows = row(Status::InProgress, "old");
        let refusal = check(&catalog(), &rows, &version(), Status::Applied).expect_err("refused");
        assert!(matches!(refusal, RepairRefusal::Edited { .. }), "{refusal}");
        assert!(check(&catalog(), &rows, &version(), Status::RolledBack).is_ok());
    }
}
