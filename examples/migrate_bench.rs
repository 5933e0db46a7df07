//! Migration speed, side by side in one run. 300 generated migrations (a table, an index
//! and 100 rows each, an ALTER every tenth) are applied to fresh databases by steward (one
//! transaction, one batch), by the floor (`psql -1 -f` on the same SQL concatenated) and by
//! the peers when installed (sqlx-cli's `sqlx migrate run`, `dbmate up`). Then it times the
//! steady-state "already up to date" check the daemon runs every loop, and
//! `steward migrate --dry-run` on an up-to-date database as a process.
//!
//! Last, a rehearsal of the 300 migrations on a copy (restore a backup into a scratch
//! database, migrate, verify, drop) beside doing the same by hand (`pg_restore` into a
//! new database, then `psql -1 -f`, then drop it).
//!
//! Run: `cargo run --release --example migrate_bench` (DATABASE_URL as for the tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};
use steward::manifest::DatabaseConfig;
use steward::migrations::{Catalog, Version};
use steward::postgres::rehearse::{RehearsalInput, rehearse};
use steward::postgres::{self, Actor, Session};
use steward::secret::{Secret, SecretRef};

const COUNT: usize = 300;

fn server() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn db_url(name: &str) -> String {
    let server = server();
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(b, _)| b)
        .to_owned();
    format!("{base}/{name}")
}

fn sql(i: usize) -> String {
    let mut sql = format!(
        "create table t_{i:03} (id serial primary key, v text not null);\ncreate index t_{i:03}_v on t_{i:03} (v);\ninsert into t_{i:03} (v) select md5(g::text) from generate_series(1, 100) g;\n"
    );
    if i % 10 == 9 {
        sql.push_str(&format!(
            "alter table t_{:03} add column extra integer;\n",
            i - 1
        ));
    }
    sql
}

fn version(i: usize) -> String {
    // 2020_01_01_000 + i, kept valid: day 1..28, sequence 000..999.
    format!(
        "2020_{:02}_{:02}_{:03}",
        1 + i / 28 / 10 % 12,
        1 + i / 10 % 28,
        i % 10
    )
}

struct Db {
    name: String,
}

impl Db {
    async fn create(admin: &mut PgConnection, tag: &str) -> Db {
        let name = format!("steward_bench_{}_{tag}", std::process::id());
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\""
            )))
            .await
            .expect("drop");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create");
        Db { name }
    }
    fn url(&self) -> String {
        db_url(&self.name)
    }
}

fn run(command: &mut Command) -> Duration {
    let start = Instant::now();
    let out = command.output().expect("run");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        command,
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

fn median_run(command: &mut Command) -> Duration {
    let mut runs: Vec<Duration> = (0..21).map(|_| run(command)).collect();
    runs.sort();
    runs[10]
}

fn installed(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|p| p.join(tool))
        .find(|p| p.is_file())
}

#[tokio::main]
async fn main() {
    let mut admin = PgConnection::connect(&server())
        .await
        .expect("Postgres (set DATABASE_URL)");
    let dir = tempfile::tempdir().expect("tempdir");
    let steward_dir = dir.path().join("steward");
    let sqlx_dir = dir.path().join("sqlx");
    let dbmate_dir = dir.path().join("dbmate");
    for d in [&steward_dir, &sqlx_dir, &dbmate_dir] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let mut all = String::new();
    for i in 0..COUNT {
        let body = sql(i);
        std::fs::write(
            steward_dir.join(format!("{}_m{i:03}.up.sql", version(i))),
            &body,
        )
        .expect("write");
        std::fs::write(sqlx_dir.join(format!("{:05}_m{i:03}.sql", i + 1)), &body).expect("write");
        std::fs::write(
            dbmate_dir.join(format!("{:014}_m{i:03}.sql", i + 1)),
            format!("-- migrate:up\n{body}\n-- migrate:down\n"),
        )
        .expect("write");
        all.push_str(&body);
    }
    std::fs::write(dir.path().join("all.sql"), &all).expect("write");
    let catalog = Catalog::load(&steward_dir).expect("catalog");
    assert_eq!(catalog.migrations.len(), COUNT);
    let target: Version = catalog.latest().expect("latest").version.clone();

    // Floor: psql applying the same SQL in one transaction.
    let floor_db = Db::create(&mut admin, "floor").await;
    let floor = run(Command::new("psql")
        .args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(dir.path().join("all.sql"))
        .arg(floor_db.url()));

    // steward.
    let db = Db::create(&mut admin, "steward").await;
    let url = Secret::new(db.url());
    let mut session = Session::open("bench", &url, None, Duration::from_secs(5), true)
        .await
        .expect("session");
    postgres::adopt(session.connection(), "bench", "bench")
        .await
        .expect("adopt");
    let start = Instant::now();
    let report = session
        .migrate_up(
            &catalog,
            &target,
            Actor {
                name: "bench",
                revision: None,
            },
        )
        .await
        .expect("migrate");
    let steward_time = start.elapsed();
    assert_eq!(report.versions.len(), COUNT);
    session.close().await;

    let mut rows = vec![
        ("psql -1 -f (floor)".to_owned(), Some(floor)),
        ("steward".to_owned(), Some(steward_time)),
    ];
    // Peers, when installed. Each keeps its command, to time it again once up to date.
    let mut peers: Vec<(&str, Command)> = Vec::new();
    if let Some(sqlx) = installed("sqlx") {
        let peer = Db::create(&mut admin, "sqlx").await;
        let mut command = Command::new(sqlx);
        command
            .args(["migrate", "run", "--source"])
            .arg(&sqlx_dir)
            .args(["--database-url", &peer.url()]);
        peers.push(("sqlx-cli", command));
    }
    if let Some(dbmate) = installed("dbmate") {
        let peer = Db::create(&mut admin, "dbmate").await;
        let url = format!("{}?sslmode=disable", peer.url());
        let mut command = Command::new(dbmate);
        command
            .args(["--url", &url, "--migrations-dir"])
            .arg(&dbmate_dir)
            .args(["--no-dump-schema", "up"]);
        peers.push(("dbmate", command));
    }
    for tool in ["sqlx-cli", "dbmate"] {
        let time = peers
            .iter_mut()
            .find(|(name, _)| *name == tool)
            .map(|(_, command)| run(command));
        rows.push((tool.to_owned(), time));
    }

    println!(
        "\napplying {COUNT} migrations to a fresh database (Postgres {})",
        server_version(&mut admin).await
    );
    println!("{:<22} {:>10} {:>12}", "tool", "seconds", "vs floor");
    for (tool, time) in &rows {
        match time {
            Some(t) => println!(
                "{tool:<22} {:>10.3} {:>11.2}x",
                t.as_secs_f64(),
                t.as_secs_f64() / floor.as_secs_f64()
            ),
            None => println!("{tool:<22} {:>10} {:>12}", "—", "not installed"),
        }
    }

    // Steady state: the read-only observation the daemon makes every loop.
    let database = DatabaseConfig {
        url: SecretRef::env("UNUSED"),
        identity: None,
        schema_version: target.clone(),
        rls_tables: vec![],
        checks: vec![],
    };
    let mut samples = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let (state, _) = postgres::observe("bench", &url, &database)
            .await
            .expect("observe");
        samples.push(start.elapsed());
        assert_eq!(state.current.as_ref(), Some(&target));
    }
    samples.sort();
    println!(
        "\nup-to-date check (connect + observe, one connection): median {:.2} ms, p90 {:.2} ms",
        ms(samples[25]),
        ms(samples[45])
    );
    // The same check on an open connection: the two round trips alone (target < 5 ms).
    let mut conn = postgres::connect("bench", &url, postgres::Access::ReadOnly)
        .await
        .expect("connect");
    let mut after_connect = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let (state, _) = postgres::observe_on(&mut conn, "bench", &database)
            .await
            .expect("observe");
        after_connect.push(start.elapsed());
        assert_eq!(state.current.as_ref(), Some(&target));
    }
    postgres::close(conn).await;
    after_connect.sort();
    println!(
        "up-to-date check after connect (two round trips): median {:.2} ms, p90 {:.2} ms",
        ms(after_connect[25]),
        ms(after_connect[45])
    );

    // `steward migrate --dry-run` as a process, on the up-to-date database, and the peers'
    // own up-to-date runs beside it.
    let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/steward");
    if exe.is_file() {
        let fleet = dir.path().join("fleet");
        std::fs::create_dir_all(fleet.join("clients")).expect("mkdir");
        std::fs::write(fleet.join("fleet.yaml"), format!("apiVersion: steward/v1\nkind: Fleet\nspec:\n  migrations: {}\n  vercel: {{token: {{env: X}}}}\n", steward_dir.display())).expect("write");
        std::fs::write(
            fleet.join("clients/bench.yaml"),
            format!("apiVersion: steward/v1\nkind: Client\nmetadata: {{name: bench}}\nspec:\n  code: {{project: p, version: v1}}\n  database: {{url: {{env: BENCH_URL}}, schemaVersion: {target}}}\n"),
        )
        .expect("write");
        let mut dry_run = Command::new(&exe);
        dry_run
            .args(["migrate", "bench", "--dry-run", "--fleet"])
            .arg(&fleet)
            .env("BENCH_URL", db.url());
        let steward = median_run(&mut dry_run);
        println!("\nup to date, as a process (median of 21 runs)");
        println!("{:<34} {:>8} {:>14}", "command", "ms", "steward is");
        println!(
            "{:<34} {:>8.1} {:>14}",
            "steward migrate --dry-run",
            ms(steward),
            ""
        );
        for (tool, command) in &mut peers {
            let peer = median_run(command);
            println!(
                "{:<34} {:>8.1} {:>13.2}x",
                format!("{tool} (apply, nothing pending)"),
                ms(peer),
                steward.as_secs_f64() / peer.as_secs_f64()
            );
        }
    } else {
        println!(
            "(build `cargo build --release` first to time `steward migrate --dry-run` as a process)"
        );
    }

    rehearsal_side_by_side(&mut admin, &catalog, &target, dir.path()).await;

    for tag in [
        "floor",
        "steward",
        "sqlx",
        "dbmate",
        "production",
        "by_hand",
    ] {
        let _ = admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"steward_bench_{}_{tag}\" WITH (FORCE)",
                std::process::id()
            )))
            .await;
    }
}

/// A rehearsal of every migration on a copy of a freshly adopted database, beside the
/// same work by hand. Best of three each, alternating, so both see the same machine.
async fn rehearsal_side_by_side(
    admin: &mut PgConnection,
    catalog: &Catalog,
    target: &Version,
    dir: &Path,
) {
    let production = Db::create(admin, "production").await;
    let url = Secret::new(production.url());
    let mut session = Session::open("bench", &url, None, Duration::from_secs(5), true)
        .await
        .expect("session");
    postgres::adopt(session.connection(), "bench", "bench")
        .await
        .expect("adopt");
    session.close().await;
    let backups = postgres::backup::Store::keep_all(dir.join("backups"));
    let info = postgres::backup::take("bench", &url, &backups, None)
        .await
        .expect("backup");
    let dump = backups.join("bench").join(&info.file);
    let database = DatabaseConfig {
        url: SecretRef::env("UNUSED"),
        identity: None,
        schema_version: target.clone(),
        rls_tables: vec![],
        checks: vec![],
    };
    let mut by_hand = Vec::new();
    let mut rehearsed = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let copy = Db::create(admin, "by_hand").await;
        run(Command::new("pg_restore")
            .args(["--no-owner", "--exit-on-error", "-d"])
            .arg(copy.url())
            .arg(&dump));
        run(Command::new("psql")
            .args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(dir.join("all.sql"))
            .arg(copy.url()));
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE \"{}\" WITH (FORCE)",
                copy.name
            )))
            .await
            .expect("drop");
        by_hand.push(start.elapsed());

        let start = Instant::now();
        let rehearsal = rehearse(RehearsalInput {
            client: "bench".to_owned(),
            server: Secret::new(server()),
            backup_id: info.id.clone(),
            backup_file: dump.clone(),
            catalog: catalog.clone(),
            to: target.clone(),
            database: database.clone(),
            pinned: None,
        })
        .await
        .expect("rehearsal");
        rehearsed.push(start.elapsed());
        assert!(rehearsal.passed(), "{:?}", rehearsal.failure);
        assert_eq!(rehearsal.migrations.len(), COUNT);
    }
    let best = |runs: &[Duration]| runs.iter().min().copied().unwrap_or_default();
    let (hand, steward) = (best(&by_hand), best(&rehearsed));
    println!(
        "
rehearsing {COUNT} migrations on a copy (best of 3)"
    );
    println!("{:<46} {:>10} {:>10}", "", "seconds", "ratio");
    println!(
        "{:<46} {:>10.3} {:>10}",
        "by hand: createdb, pg_restore, psql -1 -f, drop",
        hand.as_secs_f64(),
        ""
    );
    println!(
        "{:<46} {:>10.3} {:>9.2}x",
        "steward rehearsal (locks, rows, verify, drop)",
        steward.as_secs_f64(),
        steward.as_secs_f64() / hand.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn server_version(conn: &mut PgConnection) -> String {
    sqlx::query_scalar::<_, String>("show server_version")
        .fetch_one(conn)
        .await
        .unwrap_or_default()
}
