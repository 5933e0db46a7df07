//! Rehearsal on a copy: a real Postgres, the Vercel emulator, and the `steward` binary as
//! a process. The rehearsal restores a backup into a scratch database and never touches
//! production; its failures and long locks block the plan.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::fleet::{SHA1, World};
use common::{assert_exit, stderr, stdout};
use sqlx::Row;

/// The repository's migrations plus `extra` ones, in a folder of their own.
fn migrations_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&common::repo_root().join("migrations"), dir.path());
    for (name, sql) in extra {
        std::fs::write(dir.path().join(name), sql).expect("write migration");
    }
    dir
}

/// The world's client adopted and migrated to the repository's last version by steward.
fn at_last_repo_version(world: &World, migrations: &Path) {
    world.write_fleet(migrations, "");
    world.write_client(SHA1, "2025_01_13_001", "info", "");
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    assert_exit(&world.steward(&["migrate", "shop"]), 0);
}

async fn scratch_exists(name: &str) -> bool {
    let mut admin = common::admin().await;
    sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .expect("pg_database")
}

/// The scratch database a rehearsal's output names.
fn scratch_named_in(text: &str) -> String {
    let start = text
        .find("steward_rehearsal_")
        .unwrap_or_else(|| panic!("no scratch database named in:\n{text}"));
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Wait until a backend of a rehearsal's scratch database runs a statement containing
/// `needle`.
async fn wait_for_scratch_running(needle: &str) {
    let mut admin = common::admin().await;
    for _ in 0..1200 {
        let running: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_stat_activity where datname like 'steward\\_rehearsal\\_shop\\_%' and query like '%' || $1 || '%' and state = 'active')",
        )
        .bind(needle)
        .fetch_one(&mut admin)
        .await
        .expect("pg_stat_activity");
        if running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no rehearsal ever ran `{needle}` on a scratch database within 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_of_a_slow_alter_table_never_blocks_a_query_on_the_production_table() {
    let world = World::new().await;
    let migrations = migrations_with(&[(
        "2025_03_01_001_nickname.up.sql",
        "alter table accounts add column nickname text;\nselect pg_sleep(4);\n",
    )]);
    at_last_repo_version(&world, migrations.path());
    world.write_client(SHA1, "2025_03_01_001", "info", "");
    let mut production = world.db.connect().await;
    sqlx::query("insert into accounts (name) values ('before')")
        .execute(&mut production)
        .await
        .expect("seed production");

    let child = world
        .command(&["migrate", "shop", "--rehearse"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn steward");
    wait_for_scratch_running("nickname").await;
    // The ALTER holds ACCESS EXCLUSIVE on the copy's `accounts` while it sleeps. On
    // production, reads and writes of `accounts` must not wait for any lock at all.
    sqlx::query("set lock_timeout = '300ms'")
        .execute(&mut production)
        .await
        .expect("lock_timeout");
    for i in 0..5 {
        sqlx::query("select count(*) from accounts")
            .execute(&mut production)
            .await
            .unwrap_or_else(|e| panic!("production read {i} waited for the rehearsal: {e}"));
        sqlx::query("insert into accounts (name) values ('during')")
            .execute(&mut production)
            .await
            .unwrap_or_else(|e| panic!("production write {i} waited for the rehearsal: {e}"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let output = child
        .wait_with_output()
        .expect("steward migrate --rehearse");
    world.assert_no_secret(&output);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        text.contains("2025_03_01_001") && text.contains("ACCESS EXCLUSIVE on accounts"),
        "{text}"
    );
    let nickname: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.columns where table_name = 'accounts' and column_name = 'nickname'",
    )
    .fetch_one(&mut production)
    .await
    .expect("columns");
    assert_eq!(nickname, 0, "the rehearsal changed production");
    let at: String =
        sqlx::query_scalar("select version from system_versions order by applied_at desc limit 1")
            .fetch_one(&mut production)
            .await
            .expect("version");
    assert_eq!(at, "2025_01_13_001", "production must stay where it was");
    assert!(
        !scratch_exists(&scratch_named_in(&text)).await,
        "the scratch database was not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rehearsal_blocks_the_plan_naming_the_statement_and_its_line() {
    let world = World::new().await;
    let migrations = migrations_with(&[
        (
            "2025_03_01_001_ledger.up.sql",
            "create table ledger (id int primary key, amount int not null);\ninsert into ledger values (1, 10), (2, -5);\n",
        ),
        (
            "2025_03_02_001_positive.up.sql",
            "-- Amounts are never negative.\nalter table ledger add column note text;\nalter table ledger\n    add constraint ledger_positive check (amount > 0);\n",
        ),
    ]);
    world.write_fleet(migrations.path(), "");
    world.write_client(SHA1, "2025_03_01_001", "info", "");
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    assert_exit(&world.steward(&["migrate", "shop"]), 0);
    world.write_client(SHA1, "2025_03_02_001", "info", "    rehearse: required\n");

    let plan = world.steward(&["plan", "shop", "--detailed-exitcode"]);
    world.assert_no_secret(&plan);
    assert_exit(&plan, 3);
    let text = stdout(&plan);
    assert!(
        text.contains("rehearsal on a scratch copy failed"),
        "{text}"
    );
    assert!(
        text.contains("2025_03_02_001_positive.up.sql:3"),
        "the failing statement's line: {text}"
    );
    assert!(text.contains("alter table ledger"), "{text}");
    assert!(text.contains("ledger_positive"), "{text}");

    let apply = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&apply, 3);
    let mut production = world.db.connect().await;
    let note: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.columns where table_name = 'ledger' and column_name = 'note'",
    )
    .fetch_one(&mut production)
    .await
    .expect("columns");
    assert_eq!(note, 0, "a blocked plan must not run: {}", stderr(&apply));
    assert!(!scratch_exists(&scratch_named_in(&text)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_that_holds_an_exclusive_lock_past_max_lock_time_blocks_the_plan() {
    let world = World::new().await;
    let migrations = migrations_with(&[(
        "2025_03_01_001_plan_index.up.sql",
        "alter table accounts add column region text;\nselect pg_sleep(1.5);\n",
    )]);
    at_last_repo_version(&world, migrations.path());
    world.write_client(
        SHA1,
        "2025_03_01_001",
        "info",
        "    rehearse: required\n    maxLockTime: 500ms\n",
    );
    let plan = world.steward(&["plan", "shop", "--format", "markdown"]);
    assert_exit(&plan, 3);
    let markdown = stdout(&plan);
    assert!(
        markdown.contains("held ACCESS EXCLUSIVE on accounts for"),
        "{markdown}"
    );
    // Prose in the PR comment is markdown-escaped, so `.` reads `\.` in the source.
    assert!(
        markdown.contains(r"policy\.maxLockTime 500 ms"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| Migration | Duration | Strongest lock | Held | Rows |"),
        "the PR comment shows the rehearsal's figures: {markdown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_plan_records_its_rehearsal_figures_and_runs_every_kind_of_migration() {
    let world = World::new().await;
    let migrations = migrations_with(&[
        (
            "2025_03_01_001_touch.up.sql",
            "update accounts set plan = 'pro' where plan = 'free';\n",
        ),
        (
            "2025_03_01_002_plan_index.up.sql",
            "-- steward: no-transaction\ncreate index concurrently accounts_plan_idx on accounts (plan);\n",
        ),
    ]);
    at_last_repo_version(&world, migrations.path());
    let mut production = world.db.connect().await;
    sqlx::query("insert into accounts (name) select 'a' || g from generate_series(1, 7) g")
        .execute(&mut production)
        .await
        .expect("seed");
    world.write_client(SHA1, "2025_03_01_002", "info", "    rehearse: required\n");

    let apply = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&apply);
    assert_exit(&apply, 0);
    let detail: String = sqlx::query_scalar(
        "select detail from steward_events where step = 'rehearse' order by id desc limit 1",
    )
    .fetch_one(&mut production)
    .await
    .expect("a rehearse record");
    assert!(detail.contains("passed"), "{detail}");
    assert!(
        detail.contains("2025_03_01_001") && detail.contains("7 row(s)"),
        "the UPDATE's rows are counted: {detail}"
    );
    assert!(
        detail.contains("2025_03_01_002"),
        "the no-transaction migration was rehearsed too: {detail}"
    );
    let row =
        sqlx::query("select count(*) as n from pg_indexes where indexname = 'accounts_plan_idx'")
            .fetch_one(&mut production)
            .await
            .expect("index");
    assert_eq!(
        row.get::<i64, _>("n"),
        1,
        "the real run applied the migration"
    );
    assert!(!scratch_exists(&scratch_named_in(&detail)).await);
}

/// The scratch copy is made on `spec.rehearsal.url` when it is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_server_that_refuses_create_database_is_a_clear_refusal() {
    let world = World::new().await;
    let migrations = migrations_with(&[(
        "2025_03_01_001_touch.up.sql",
        "update accounts set plan = 'pro';\n",
    )]);
    at_last_repo_version(&world, migrations.path());
    let role = format!("steward_norole_{:08x}", rand::random::<u32>());
    let mut admin = common::admin().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "create role {role} login nocreatedb"
    )))
    .execute(&mut admin)
    .await
    .expect("role");
    let server = common::server_url().replacen("postgres@", &format!("{role}@"), 1);
    assert!(
        server.contains(&role),
        "DATABASE_URL must name user postgres: {server}"
    );
    world.write_client(
        SHA1,
        "2025_03_01_001",
        "info",
        "  rehearsal: {url: {env: TEST_REHEARSAL_URL}}\n",
    );
    let output = world
        .command(&["migrate", "shop", "--rehearse"])
        .env("TEST_REHEARSAL_URL", &server)
        .output()
        .expect("steward");
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("drop role {role}")))
        .execute(&mut admin)
        .await;
    assert_exit(&output, 3);
    assert!(
        stderr(&output).contains("spec.rehearsal.url"),
        "{}",
        stderr(&output)
    );
}
