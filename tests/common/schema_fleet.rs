//! A one-client fleet (`shop`) with only a database: no Vercel, for driving the schema
//! commands (`adopt`, `migrate`, `repair`, `lint`...) through the binary.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use sqlx::Row;

use super::TestDb;

/// The fleet in a temp dir; its database is `db`, its migrations in `migrations/`.
pub struct SchemaFleet {
    dir: tempfile::TempDir,
    url: String,
}

impl SchemaFleet {
    pub fn new(db: &TestDb, migrations: &[(&str, &str)], schema_version: &str) -> SchemaFleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("clients")).expect("mkdir");
        fs::create_dir_all(root.join("migrations")).expect("mkdir");
        for (name, sql) in migrations {
            fs::write(root.join("migrations").join(name), sql).expect("write");
        }
        fs::write(
            root.join("fleet.yaml"),
            "apiVersion: steward/v1\nkind: Fleet\nspec:\n  migrations: migrations\n  backups: {dir: backups}\n  vercel: {token: {env: STEWARD_TEST_VERCEL_TOKEN}}\n",
        )
        .expect("write");
        let fleet = SchemaFleet {
            dir,
            url: db.url.clone(),
        };
        fleet.set_version(schema_version);
        fleet
    }

    pub fn set_version(&self, schema_version: &str) {
        fs::write(
            self.dir.path().join("clients/shop.yaml"),
            format!(
                "apiVersion: steward/v1\nkind: Client\nmetadata: {{name: shop}}\nspec:\n  code: {{project: shop-web, version: v1.0.0}}\n  database:\n    url: {{env: SHOP_DATABASE_URL}}\n    schemaVersion: {schema_version}\n  policy: {{destructive: allow}}\n"
            ),
        )
        .expect("write");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write (or overwrite) one migration file.
    pub fn write_migration(&self, name: &str, sql: &str) {
        fs::write(self.path().join("migrations").join(name), sql).expect("write migration");
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
        command
            .args(args)
            .arg("--fleet")
            .arg(self.path())
            .env("SHOP_DATABASE_URL", &self.url)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run steward")
    }
}

/// Every `system_versions` row as (version, status), oldest first; empty without the table.
pub async fn versions(db: &TestDb) -> Vec<(String, String)> {
    let mut conn = db.connect().await;
    let exists: bool = sqlx::query_scalar("select to_regclass('system_versions') is not null")
        .fetch_one(&mut conn)
        .await
        .expect("look for system_versions");
    if !exists {
        return Vec::new();
    }
    sqlx::query("select version, status from system_versions order by applied_at")
        .fetch_all(&mut conn)
        .await
        .expect("read system_versions")
        .into_iter()
        .map(|r| (r.get("version"), r.get("status")))
        .collect()
}

pub async fn table_exists(db: &TestDb, table: &str) -> bool {
    let mut conn = db.connect().await;
    sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .expect("look for a table")
}
