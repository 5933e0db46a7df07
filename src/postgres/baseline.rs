//! `steward adopt --baseline V`: recording versions up to V as applied on a database
//! migrated by hand, only when the database shows it. Every `.verify.sql` up to V must
//! pass, the rows the guide's process wrote must agree, and a baseline above the latest
//! recorded version needs each version above it confirmed by its `.verify.sql`.
//! Otherwise the baseline would mark migrations that never ran as applied, and the next
//! `migrate` would skip them.

use std::fmt;
use std::path::PathBuf;

use sqlx::PgConnection;

use super::PgError;
use super::lock::Session;
use super::migrate::Actor;
use super::verify::run_verify_file;
use super::versions::{self, NewRow, Row, Status};
use crate::migrations::{Catalog, Migration, Version, summarize};

/// Why a baseline was refused. Every variant is a refusal: exit 3, nothing recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineRefusal {
    #[error("baseline {version} is not in the migrations folder {}", dir.display())]
    NotInCatalog { version: Version, dir: PathBuf },
    #[error(
        "system_versions says {version} is `{status}`, but --baseline {baseline} would record it as applied"
    )]
    RowDisagrees {
        version: Version,
        status: String,
        baseline: Version,
    },
    #[error("system_versions says {version} is applied, which is above --baseline {baseline}")]
    AppliedAbove { version: Version, baseline: Version },
    #[error(
        "system_versions records {recorded} as the latest applied version, and {} above it (up to --baseline {baseline}) have no .verify.sql to show they ran; baseline at {recorded}, add a .verify.sql to each, or let `steward migrate` run them",
        summarize(unconfirmed)
    )]
    AboveRecorded {
        recorded: Version,
        baseline: Version,
        unconfirmed: Vec<Version>,
    },
    #[error(
        "the database is not at --baseline {baseline}: {}; fix the database or choose a lower baseline",
        failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    VerifyFailed {
        baseline: Version,
        failures: Vec<VerifyFailure>,
    },
}

/// A `.verify.sql` statement that did not return true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    pub version: Version,
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} fails its check at {}:{}: {}",
            self.version,
            self.file.display(),
            self.line,
            self.reason
        )
    }
}

/// What a baseline will record, checked against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    pub version: Version,
    /// Versions up to the baseline without a row that carries a checksum: recorded applied.
    pub record: Vec<Version>,
    /// Of `record`, those whose `.verify.sql` passed; the rest are taken on the operator's
    /// word, having no verify file.
    pub confirmed: Vec<Version>,
    /// Versions up to the baseline already recorded with a checksum: kept as they are.
    pub kept: usize,
}

/// The migrations a baseline at `baseline` records, or why the rows refuse it. Pure.
pub fn check_rows<'c>(
    catalog: &'c Catalog,
    rows: &[Row],
    baseline: &Version,
) -> Result<Vec<&'c Migration>, BaselineRefusal> {
    if !catalog.contains(baseline) {
        return Err(BaselineRefusal::NotInCatalog {
            version: baseline.clone(),
            dir: catalog.dir.clone(),
        });
    }
    let applied = Status::Applied.as_str();
    for row in rows {
        if row.version <= *baseline && row.status != applied {
            return Err(BaselineRefusal::RowDisagrees {
                version: row.version.clone(),
                status: row.status.clone(),
                baseline: baseline.clone(),
            });
        }
        if row.version > *baseline && row.status == applied {
            return Err(BaselineRefusal::AppliedAbove {
                version: row.version.clone(),
                baseline: baseline.clone(),
            });
        }
    }
    let up_to: Vec<&Migration> = catalog
        .migrations
        .iter()
        .filter(|m| m.version <= *baseline)
        .collect();
    if let Some(recorded) = versions::current(rows) {
        let unconfirmed: Vec<Version> = up_to
            .iter()
            .filter(|m| m.version > recorded && m.verify.is_none())
            .map(|m| m.version.clone())
            .collect();
        if !unconfirmed.is_empty() {
            return Err(BaselineRefusal::AboveRecorded {
                recorded,
                baseline: baseline.clone(),
                unconfirmed,
            });
        }
    }
    Ok(up_to)
}

/// Check a baseline against the rows (`latest_rows`) and every `.verify.sql` up to it,
/// each run in a read-only transaction that is rolled back. Writes nothing: the plan of
/// `adopt --baseline` (its dry run too) and the step's guard both judge with it.
pub async fn check(
    conn: &mut PgConnection,
    client: &str,
    catalog: &Catalog,
    rows: &[Row],
    baseline: &Version,
) -> Result<Baseline, PgError> {
    let refused = |refusal| PgError::Baseline {
        client: client.to_owned(),
        refusal,
    };
    let up_to = check_rows(catalog, rows, baseline).map_err(refused)?;
    let mut failures = Vec::new();
    let mut passed = Vec::new();
    for m in &up_to {
        let Some(verify) = &m.verify else { continue };
        match verify_read_only(conn, client, m, verify).await? {
            None => passed.push(m.version.clone()),
            Some(failure) => failures.push(failure),
        }
    }
    if !failures.is_empty() {
        return Err(refused(BaselineRefusal::VerifyFailed {
            baseline: baseline.clone(),
            failures,
        }));
    }
    let recorded = |m: &&&Migration| {
        rows.iter()
            .any(|r| r.version == m.version && r.checksum.is_some())
    };
    let record: Vec<Version> = up_to
        .iter()
        .filter(|m| !recorded(m))
        .map(|m| m.version.clone())
        .collect();
    Ok(Baseline {
        version: baseline.clone(),
        confirmed: passed.into_iter().filter(|v| record.contains(v)).collect(),
        kept: up_to.len() - record.len(),
        record,
    })
}

impl Session {
    /// Record what [`check`] found, each version with its checksum (so later runs can
    /// tell when its file is edited), in one transaction: all of it or none.
    pub async fn record_baseline(
        &mut self,
        catalog: &Catalog,
        baseline: &Baseline,
        actor: Actor<'_>,
    ) -> Result<(), PgError> {
        self.exec("BEGIN").await?;
        let mut result = Ok(());
        for m in baseline.record.iter().filter_map(|v| catalog.get(v)) {
            result = versions::insert(
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
            .await;
            if result.is_err() {
                break;
            }
        }
        match result {
            Ok(()) => self.exec("COMMIT").await,
            Err(err) => {
                let _ = self.exec("ROLLBACK").await;
                Err(err)
            }
        }
    }
}

/// Run one verify file in a read-only transaction that is rolled back: a verify file
/// only reads, and a baseline check must not write even if one tries.
async fn verify_read_only(
    conn: &mut PgConnection,
    client: &str,
    m: &Migration,
    verify: &crate::migrations::Script,
) -> Result<Option<VerifyFailure>, PgError> {
    let exec = |sql: &'static str| sqlx::raw_sql(sql);
    exec("BEGIN READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(PgError::query(client, "BEGIN READ ONLY"))?;
    let result = run_verify_file(conn, client, m, verify).await;
    exec("ROLLBACK")
        .execute(&mut *conn)
        .await
        .map_err(PgError::query(client, "ROLLBACK"))?;
    match result {
        Ok(()) => Ok(None),
        Err(PgError::Migration {
            version,
            file,
            line,
            message,
            ..
        }) => Ok(Some(VerifyFailure {
            version,
            file,
            line,
            reason: message,
        })),
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::Script;

    fn v(text: &str) -> Version {
        text.parse().expect("version")
    }

    fn script(name: &str) -> Script {
        Script {
            path: PathBuf::from(name),
            sql: "select true;".to_owned(),
            checksum: name.to_owned(),
        }
    }

    fn catalog(with_verify: &[bool]) -> Catalog {
        let migrations = with_verify
            .iter()
            .enumerate()
            .map(|(i, &verify)| Migration {
                version: v(&format!("2024_01_01_{:03}", i + 1)),
                name: format!("m{i}"),
                up: script(&format!("{i}.up.sql")),
                down: None,
                verify: verify.then(|| script(&format!("{i}.verify.sql"))),
                no_transaction: false,
                impact: Default::default(),
            })
            .collect();
        Catalog {
            dir: PathBuf::from("migrations"),
            migrations,
        }
    }

    fn applied(version: &str) -> Row {
        Row {
            version: v(version),
            status: Status::Applied.as_str().to_owned(),
            checksum: None,
            applied_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_baseline_above_the_recorded_rows_without_verify_files_is_refused() {
        let refusal = check_rows(
            &catalog(&[false, false, false]),
            &[applied("2024_01_01_001")],
            &v("2024_01_01_003"),
        )
        .expect_err("refused");
        assert_eq!(
            refusal,
            BaselineRefusal::AboveRecorded {
                recorded: v("2024_01_01_001"),
                baseline: v("2024_01_01_003"),
                unconfirmed: vec![v("2024_01_01_002"), v("2024_01_01_003")],
            }
        );
    }

    #[test]
    fn versions_above_the_recorded_rows_with_verify_files_are_left_to_those_files() {
        let catalog = catalog(&[false, true]);
        let up_to = check_rows(&catalog, &[applied("2024_01_01_001")], &v("2024_01_01_002"))
            .expect("allowed pending verify");
        assert_eq!(up_to.len(), 2);
    }

    #[test]
    fn an_applied_row_above_the_baseline_is_refused() {
        let refusal = check_rows(
            &catalog(&[false, false]),
            &[applied("2024_01_01_002")],
            &v("2024_01_01_001"),
        )
        .expect_err("refused");
        assert!(
            matches!(refusal, BaselineRefusal::AppliedAbove { .. }),
            "{refusal}"
        );
    }
}
