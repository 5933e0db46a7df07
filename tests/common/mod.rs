//! Shared test helpers: a fresh Postgres database per test, a copy of the example fleet,
//! and running the `steward` binary as a process.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::{Connection, Executor, PgConnection};

/// The server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

const HOW_TO_START: &str = "start one with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start \
     (or point DATABASE_URL at a server where this user may CREATE DATABASE)";

/// A database of its own for one test, dropped when the value goes out of scope.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Create `steward_test_<pid>_<random>`. Fails loudly (never skips) without a server.
    pub async fn create() -> TestDb {
        let admin_url = server_url();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|err| {
                panic!("no Postgres answers at {admin_url}: {err}\n{HOW_TO_START}")
            });
        let name = format!(
            "steward_test_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
        let url = with_database(&admin_url, &name);
        TestDb {
            name,
            url,
            admin_url,
        }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a fresh thread with its own runtime
        // avoids blocking (or nesting) it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await?;
                Ok::<_, sqlx::Error>(())
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("warning: could not drop test database {}: {err}", self.name);
        }
    }
}

/// Replace the database name in a postgres URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(cut) if base[..cut].contains("//") && cut > base.find("//").unwrap_or(0) + 1 => {
            &base[..cut]
        }
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the example fleet in a temp dir, with `migrations` pointing at the repo's.
pub fn copy_example_fleet() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = repo_root().join("fleet");
    copy_dir(&src, dir.path());
    let fleet_yaml = dir.path().join("fleet.yaml");
    let text = std::fs::read_to_string(&fleet_yaml).expect("read fleet.yaml");
    let migrations = repo_root().join("migrations");
    let text = text.replace(
        "migrations: ../migrations",
        &format!("migrations: {}", migrations.display()),
    );
    std::fs::write(&fleet_yaml, text).expect("write fleet.yaml");
    dir
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read_dir") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy");
        }
    }
}

/// Run the steward binary with arguments and extra environment.
pub fn steward(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run steward")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fail the test, showing both streams, unless the process exited with `code`.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}\n{}",
        stdout(output),
        stderr(output)
    );
}

/// A connection to the server's maintenance database.
pub async fn admin() -> PgConnection {
    PgConnection::connect(&server_url())
        .await
        .unwrap_or_else(|err| panic!("no Postgres: {err}\n{HOW_TO_START}"))
}

pub mod browser;
pub mod fleet;
pub mod hooks;
pub mod process;
pub mod s3;
pub mod schema_fleet;
pub mod smtp;
