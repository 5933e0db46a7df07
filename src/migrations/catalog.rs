//! Reading `migrations/`: `<YYYY_MM_DD_NNN>_<name>.up.sql`, with optional `.down.sql`
//! (absent: irreversible) and `.verify.sql` (queries that must return true afterwards).
//! A `-- steward: no-transaction` directive on the leading comment lines marks a
//! migration that cannot run inside a transaction.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::version::Version;

/// Every migration in a folder, in version order.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub dir: PathBuf,
    pub migrations: Vec<Migration>,
}

#[derive(Debug, Clone)]
pub struct Migration {
    pub version: Version,
    pub name: String,
    pub up: Script,
    pub down: Option<Script>,
    pub verify: Option<Script>,
    /// `-- steward: no-transaction`: runs outside a transaction (CREATE INDEX CONCURRENTLY).
    pub no_transaction: bool,
    /// `-- steward: downtime | breaking | user-action <text>`: told to the client.
    pub impact: super::Impact,
}

impl Migration {
    pub fn is_reversible(&self) -> bool {
        self.down.is_some()
    }
}

/// One SQL file, its text and the SHA-256 of its bytes.
#[derive(Debug, Clone)]
pub struct Script {
    pub path: PathBuf,
    pub sql: String,
    pub checksum: String,
}

impl Script {
    fn read(path: &Path) -> Result<Self, CatalogError> {
        let bytes = fs::read(path).map_err(|source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let checksum = hex::encode(Sha256::digest(&bytes));
        let sql = String::from_utf8(bytes).map_err(|_| CatalogError::NotUtf8 {
            path: path.to_path_buf(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            sql,
            checksum,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: malformed migration file name; expected <YYYY_MM_DD_NNN>_<name>.up.sql (or .down.sql, .verify.sql), name in [a-z0-9_]", path.display())]
    MalformedName { path: PathBuf },
    #[error("version {version} appears twice: {} and {}", first.display(), second.display())]
    DuplicateVersion {
        version: Version,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{}: a .{kind}.sql without its .up.sql", path.display())]
    Orphan { path: PathBuf, kind: &'static str },
}

#[derive(Default)]
struct Parts {
    name: String,
    up: Option<PathBuf>,
    down: Option<PathBuf>,
    verify: Option<PathBuf>,
}

impl Catalog {
    /// Read a migrations folder, collecting every problem rather than stopping at the first.
    pub fn load(dir: &Path) -> Result<Catalog, Vec<CatalogError>> {
        let entries = fs::read_dir(dir).map_err(|source| {
            vec![CatalogError::Io {
                path: dir.to_path_buf(),
                source,
            }]
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        files.sort();

        let mut errors = Vec::new();
        let mut by_version: BTreeMap<Version, Parts> = BTreeMap::new();
        for path in files {
            let Some((version, name, kind)) = parse_file_name(&path) else {
                errors.push(CatalogError::MalformedName { path });
                continue;
            };
            let parts = by_version.entry(version.clone()).or_default();
            if !parts.name.is_empty() && parts.name != name {
                let first = parts
                    .up
                    .clone()
                    .or(parts.down.clone())
                    .or(parts.verify.clone())
                    .unwrap_or_default();
                errors.push(CatalogError::DuplicateVersion {
                    version,
                    first,
                    second: path,
                });
                continue;
            }
            parts.name = name;
            let slot = match kind {
                "up" => &mut parts.up,
                "down" => &mut parts.down,
                _ => &mut parts.verify,
            };
            *slot = Some(path);
        }

        let mut migrations = Vec::new();
        for (version, parts) in by_version {
            let Some(up) = parts.up else {
                for (path, kind) in [(parts.down, "down"), (parts.verify, "verify")] {
                    if let Some(path) = path {
                        errors.push(CatalogError::Orphan { path, kind });
                    }
                }
                continue;
            };
            let read = |path: Option<PathBuf>| path.map(|p| Script::read(&p)).transpose();
            match (Script::read(&up), read(parts.down), read(parts.verify)) {
                (Ok(up), Ok(down), Ok(verify)) => {
                    let no_transaction = has_no_transaction_directive(&up.sql);
                    let impact = super::Impact::parse(&up.sql);
                    migrations.push(Migration {
                        impact,
                        version,
                        name: parts.name,
                        up,
                        down,
                        verify,
                        no_transaction,
                    });
                }
                (up, down, verify) => {
                    errors.extend(up.err());
                    errors.extend(down.err());
                    errors.extend(verify.err());
                }
            }
        }
        if errors.is_empty() {
            Ok(Catalog {
                dir: dir.to_path_buf(),
                migrations,
            })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, version: &Version) -> Option<&Migration> {
        self.migrations
            .binary_search_by(|m| m.version.cmp(version))
            .ok()
            .map(|i| &self.migrations[i])
    }

    pub fn contains(&self, version: &Version) -> bool {
        self.get(version).is_some()
    }

    pub fn latest(&self) -> Option<&Migration> {
        self.migrations.last()
    }

    /// Migrations with `from < version <= to`, in order (what an upgrade applies).
    pub fn between(&self, from: Option<&Version>, to: &Version) -> Vec<&Migration> {
        self.migrations
            .iter()
            .filter(|m| from.is_none_or(|from| &m.version > from) && &m.version <= to)
            .collect()
    }
}

fn parse_file_name(path: &Path) -> Option<(Version, String, &'static str)> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".sql")?;
    let (stem, kind) = if let Some(s) = stem.strip_suffix(".up") {
        (s, "up")
    } else if let Some(s) = stem.strip_suffix(".down") {
        (s, "down")
    } else if let Some(s) = stem.strip_suffix(".verify") {
        (s, "verify")
    } else {
        return None;
    };
    if stem.len() < 16 || stem.as_bytes().get(14) != Some(&b'_') {
        return None;
    }
    let version: Version = stem[..14].parse().ok()?;
    let name = &stem[15..];
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    valid.then(|| (version, name.to_owned(), kind))
}

/// The directive must sit in the leading comment block, before any SQL.
pub fn has_no_transaction_directive(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .take_while(|line| line.is_empty() || line.starts_with("--"))
        .any(|line| {
            line.trim_start_matches('-')
                .trim()
                .eq_ignore_ascii_case("steward: no-transaction")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, sql: &str) {
        fs::write(dir.join(name), sql).expect("write");
    }

    #[test]
    fn a_folder_of_migrations_loads_in_version_order_with_checksums() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "2024_01_02_001_second.up.sql", "select 2;");
        write(dir.path(), "2024_01_01_001_first.up.sql", "select 1;");
        write(dir.path(), "2024_01_01_001_first.down.sql", "select -1;");
        let catalog = Catalog::load(dir.path()).expect("valid");
        let versions: Vec<_> = catalog
            .migrations
            .iter()
            .map(|m| m.version.to_string())
            .collect();
        assert_eq!(versions, ["2024_01_01_001", "2024_01_02_001"]);
        assert!(catalog.migrations[0].is_reversible());
        assert!(!catalog.migrations[1].is_reversible());
        assert_eq!(catalog.migrations[0].up.checksum.len(), 64);
    }

    #[test]
    fn every_problem_in_a_folder_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "2024_01_01_001_a.up.sql", "select 1;");
        write(dir.path(), "2024_01_01_001_b.up.sql", "select 1;");
        write(dir.path(), "2024_01_03_001_c.down.sql", "select 1;");
        write(dir.path(), "not_a_migration.sql", "select 1;");
        let errors = Catalog::load(dir.path()).expect_err("invalid");
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{text:#?}");
        assert!(text.iter().any(|t| t.contains("appears twice")));
        assert!(text.iter().any(|t| t.contains("without its .up.sql")));
        assert!(
            text.iter()
                .any(|t| t.contains("malformed migration file name"))
        );
    }

    #[test]
    fn the_no_transaction_directive_is_read_from_the_leading_comments_only() {
        assert!(has_no_transaction_directive(
            "-- steward: no-transaction\ncreate index concurrently i on t(a);"
        ));
        assert!(!has_no_transaction_directive(
            "select 1;\n-- steward: no-transaction\n"
        ));
    }
}
