//! The schema engine against a real Postgres, driven through the `steward` binary:
//! the guide's faults, each as a test.

mod common;

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use common::schema_fleet::{SchemaFleet as Fleet, table_exists, versions};
use common::{TestDb, stderr, stdout};

const ACCOUNTS: (&str, &str) = (
    "2024_01_01_001_accounts.up.sql",
    "create table accounts (id int primary key);\n",
);

fn five_with_a_syntax_error_in_the_third() -> Vec<(&'static str, &'static str)> {
    vec![
        ACCOUNTS,
        (
            "2024_01_02_001_members.up.sql",
            "create table members (id int);\n",
        ),
        (
            "2024_01_03_001_broken.up.sql",
            "create table invoices (id int);\n\ncreate tabel oops (x int);\n",
        ),
        (
            "2024_01_04_001_more.up.sql",
            "create table more (id int);\n",
        ),
        (
            "2024_01_05_001_last.up.sql",
            "create table last (id int);\n",
        ),
    ]
}

#[tokio::test]
async fn a_syntax_error_in_the_third_of_five_applies_nothing_and_names_file_and_line() {
    let db = TestDb::create().await;
    let fleet = Fleet::new(
        &db,
        &five_with_a_syntax_error_in_the_third(),
        "2024_01_05_001",
    );
    assert_eq!(fleet.run(&["adopt", "shop"]).status.code(), Some(0));
    let out = fleet.run(&["migrate", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("2024_01_03_001_broken.up.sql:3"), "{err}");
    assert!(err.contains("nothing of this run was applied"), "{err}");
    assert!(versions(&db).await.is_empty(), "system_versions unchanged");
    assert!(
        !table_exists(&db, "accounts").await,
        "the first two migrations were rolled back too"
    );
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused_naming_the_version_and_both_checksums() {
    let db = TestDb::create().await;
    let fleet = Fleet::new(&db, &[ACCOUNTS], "2024_01_01_001");
    fleet.run(&["adopt", "shop"]);
    assert_eq!(fleet.run(&["migrate", "shop"]).status.code(), Some(0));
    fs::write(
        fleet.path().join("migrations").join(ACCOUNTS.0),
        "create table accounts (id bigint primary key);\n",
    )
    .expect("edit");
    fs::write(
        fleet.path().join("migrations/2024_01_02_001_next.up.sql"),
        "select 1;\n",
    )
    .expect("write");
    fleet.set_version("2024_01_02_001");
    let out = fleet.run(&["migrate", "shop"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("2024_01_01_001") && err.contains("was edited"),
        "{err}"
    );
    let long_hex = err
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .count();
    assert_eq!(long_hex, 2, "both checksums shown: {err}");
}

#[tokio::test]
async fn a_database_at_a_version_not_on_disk_is_refused() {
    let db = TestDb::create().await;
    let fleet = Fleet::new(&db, &[ACCOUNTS], "2024_01_01_001");
    fleet.run(&["adopt", "shop"]);
    let mut conn = db.connect().await;
    sqlx::query(
        "insert into system_versions (version, status) values ('2030_01_01_001', 'applied')",
    )
    .execute(&mut conn)
    .await
    .expect("q");
    let out = fleet.run(&["migrate", "shop"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out)
            .contains("the database is at 2030_01_01_001, which is not in the migrations folder"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn the_wrong_clients_database_is_refused_before_any_write() {
    let db = TestDb::create().await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "create table steward_identity (client text not null, id uuid not null, adopted_at timestamptz default now(), adopted_by text not null);
         insert into steward_identity (client, id, adopted_by) values ('globex', gen_random_uuid(), 'test');",
    )
    .execute(&mut conn)
    .await
    .expect("q");
    let fleet = Fleet::new(&db, &[ACCOUNTS], "2024_01_01_001");
    let out = fleet.run(&["migrate", "shop"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("belongs to client `globex`"),
        "{}",
        stderr(&out)
    );
    assert!(!table_exists(&db, "accounts").await);
    assert!(
        !table_exists(&db, "system_versions").await,
        "not even bookkeeping was written"
    );
}

#[tokio::test]
async fn two_migrate_processes_at_once_apply_exactly_once() {
    let db = TestDb::create().await;
    let slow = (
        "2024_01_02_001_slow.up.sql",
        "select pg_sleep(1.5);\ncreate table slow (id int);\n",
    );
    let fleet = Fleet::new(&db, &[ACCOUNTS, slow], "2024_01_02_001");
    fleet.run(&["adopt", "shop"]);
    let spawn = || {
        fleet
            .command(&["migrate", "shop", "--lock-timeout", "500ms"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(3)),
        "{codes:?}\n{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    let loser = if a.status.code() == Some(3) { &a } else { &b };
    assert!(
        stderr(loser).contains("held by `steward`"),
        "{}",
        stderr(loser)
    );
    let applied: Vec<_> = versions(&db)
        .await
        .into_iter()
        .filter(|(_, s)| s == "applied")
        .collect();
    assert_eq!(
        applied.len(),
        2,
        "each version applied exactly once: {applied:?}"
    );
}

#[tokio::test]
async fn a_process_killed_mid_transaction_applies_nothing_and_the_next_run_succeeds() {
    let db = TestDb::create().await;
    let slow = (
        "2024_01_02_001_slow.up.sql",
        "create table half (id int);\nselect pg_sleep(30);\n",
    );
    let fleet = Fleet::new(&db, &[ACCOUNTS, slow], "2024_01_02_001");
    fleet.run(&["adopt", "shop"]);
    let mut child = fleet
        .command(&["migrate", "shop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_activity(&db, "pg_sleep").await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // The server notices the dead client and rolls its transaction back.
    wait_until_idle(&db).await;
    assert!(versions(&db).await.is_empty());
    assert!(!table_exists(&db, "half").await);
    fs::write(
        fleet.path().join("migrations").join(slow.0),
        "create table half (id int);\n",
    )
    .expect("fix");
    // Editing a never-applied migration is fine: nothing recorded its checksum.
    let out = fleet.run(&["migrate", "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(table_exists(&db, "half").await);
}

#[tokio::test]
async fn a_crash_inside_a_no_transaction_migration_blocks_preflight_until_repair() {
    let db = TestDb::create().await;
    let concurrent = (
        "2024_01_02_001_index.up.sql",
        "-- steward: no-transaction\nselect pg_sleep(30);\ncreate index concurrently accounts_id on accounts (id);\n",
    );
    let fleet = Fleet::new(&db, &[ACCOUNTS, concurrent], "2024_01_02_001");
    fleet.run(&["adopt", "shop"]);
    let mut child = fleet
        .command(&["migrate", "shop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_activity(&db, "pg_sleep").await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    wait_until_idle(&db).await;
    assert!(
        versions(&db)
            .await
            .contains(&("2024_01_02_001".to_owned(), "in_progress".to_owned()))
    );

    let pre = fleet.run(&["preflight", "shop"]);
    assert_eq!(pre.status.code(), Some(3));
    assert!(
        stdout(&pre).contains(
            "FAIL no interrupted migration: migration 2024_01_02_001 is `in_progress` after an interrupted run"
        ),
        "{}",
        stdout(&pre)
    );
    let blocked = fleet.run(&["migrate", "shop"]);
    assert_eq!(blocked.status.code(), Some(3));
    assert!(
        stderr(&blocked).contains("steward repair shop --version 2024_01_02_001"),
        "{}",
        stderr(&blocked)
    );

    let repair = fleet.run(&[
        "repair",
        "shop",
        "--version",
        "2024_01_02_001",
        "--mark",
        "rolled-back",
    ]);
    assert_eq!(repair.status.code(), Some(0), "{}", stderr(&repair));
    let out = fleet.run(&["migrate", "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn a_database_built_by_the_guides_manual_process_is_adopted_without_losing_rows() {
    let db = TestDb::create().await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "create table system_versions (version varchar(20) not null, applied_at timestamptz not null default now(), status varchar(20) not null default 'applied');
         create table accounts (id int primary key);
         insert into system_versions (version, applied_at, status) values ('2024_01_01_001', now() - interval '2 days', 'applied');
         insert into system_versions (version, applied_at, status) values ('2024_01_01_001', now() - interval '3 days', 'rolled_back');",
    )
    .execute(&mut conn)
    .await
    .expect("q");
    let fleet = Fleet::new(
        &db,
        &[
            ACCOUNTS,
            (
                "2024_01_02_001_next.up.sql",
                "create table next (id int);\n",
            ),
        ],
        "2024_01_02_001",
    );
    let adopt = fleet.run(&["adopt", "shop", "--baseline", "2024_01_01_001"]);
    assert_eq!(adopt.status.code(), Some(0), "{}", stderr(&adopt));
    let migrate = fleet.run(&["migrate", "shop"]);
    assert_eq!(migrate.status.code(), Some(0), "{}", stderr(&migrate));
    let rows = versions(&db).await;
    assert!(
        rows.contains(&("2024_01_01_001".to_owned(), "rolled_back".to_owned())),
        "history kept: {rows:?}"
    );
    assert_eq!(
        rows.iter().filter(|(v, _)| v == "2024_01_02_001").count(),
        1
    );
    let verify = fleet.run(&["verify", "shop", "--expected-version", "2024_01_02_001"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
}

#[tokio::test]
async fn a_backup_restores_the_schema_it_was_taken_at() {
    let db = TestDb::create().await;
    let fleet = Fleet::new(
        &db,
        &[
            ACCOUNTS,
            (
                "2024_01_02_001_next.up.sql",
                "create table next (id int);\n",
            ),
        ],
        "2024_01_01_001",
    );
    fleet.run(&["adopt", "shop"]);
    fleet.run(&["migrate", "shop"]);
    let backup = fleet.run(&["backup", "shop"]);
    assert_eq!(backup.status.code(), Some(0), "{}", stderr(&backup));
    fleet.set_version("2024_01_02_001");
    assert_eq!(fleet.run(&["migrate", "shop"]).status.code(), Some(0));
    assert!(table_exists(&db, "next").await);
    let refused = fleet.run(&["restore", "shop", "--backup", "latest"]);
    assert_eq!(refused.status.code(), Some(3), "restore needs --yes");
    let restore = fleet.run(&["restore", "shop", "--backup", "latest", "--yes"]);
    assert_eq!(restore.status.code(), Some(0), "{}", stderr(&restore));
    assert!(
        stdout(&restore).contains("schema now 2024_01_01_001")
            && stdout(&restore).contains("rolled_back: 2024_01_02_001"),
        "{}",
        stdout(&restore)
    );
    assert!(!table_exists(&db, "next").await);
}

#[tokio::test]
async fn migrate_under_backup_required_takes_a_backup_first_and_records_the_run() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::create().await;
    let fleet = Fleet::new(&db, &[ACCOUNTS], "2024_01_01_001");
    let adopt = fleet.run(&["adopt", "shop"]);
    assert_eq!(adopt.status.code(), Some(0), "{}", stderr(&adopt));
    let dry = fleet.run(&["migrate", "shop", "--dry-run"]);
    assert!(
        stdout(&dry).contains("a backup is taken first (policy.backup: required)"),
        "{}",
        stdout(&dry)
    );

    // pg_dump cannot run: the backup fails, so nothing is migrated.
    let bin = tempfile::tempdir().expect("tempdir");
    let fake = bin.path().join("pg_dump");
    fs::write(
        &fake,
        "#!/bin/sh\necho 'pg_dump: error: no space left' >&2\nexit 1\n",
    )
    .expect("write");
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
    let refused = fleet
        .command(&["migrate", "shop"])
        .env("STEWARD_PG_BINDIR", bin.path())
        .output()
        .expect("run");
    assert_ne!(refused.status.code(), Some(0), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("no space left"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !table_exists(&db, "accounts").await,
        "no migration ran without its backup"
    );

    let run = fleet.run(&["migrate", "shop"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let said = stdout(&run);
    assert!(
        matches!(
            (said.find("shop: backup "), said.find("shop: applied 1 migration")),
            (Some(backup), Some(migrated)) if backup < migrated
        ),
        "the backup is taken first:\n{said}"
    );
    let dumps = fs::read_dir(fleet.path().join("backups/shop"))
        .expect("backups folder")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "dump"))
        })
        .count();
    assert_eq!(dumps, 1, "one backup, taken by the migrate");
    let mut conn = db.connect().await;
    let detail: String = sqlx::query_scalar(
        "select detail from steward_events where step = 'migrate' and outcome = 'completed'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the manual migrate wrote an update record");
    assert!(
        detail.contains("schema now 2024_01_01_001") && detail.contains("backup "),
        "{detail}"
    );
}

#[tokio::test]
async fn verify_fails_when_row_level_security_is_off() {
    let db = TestDb::create().await;
    let fleet = Fleet::new(&db, &[ACCOUNTS], "2024_01_01_001");
    let client = fs::read_to_string(fleet.path().join("clients/shop.yaml")).expect("read");
    fs::write(
        fleet.path().join("clients/shop.yaml"),
        client.replace(
            "    schemaVersion:",
            "    verify:\n      rlsTables: [accounts]\n      checks:\n        - {name: no accounts yet, sql: \"select count(*) = 0 from accounts\"}\n        - {name: always false, sql: \"select false\"}\n        - {name: a count, sql: \"select count(*) from accounts\"}\n    schemaVersion:",
        ),
    )
    .expect("write");
    assert_eq!(fleet.run(&["adopt", "shop"]).status.code(), Some(0));
    assert_eq!(fleet.run(&["migrate", "shop"]).status.code(), Some(0));
    let out = fleet.run(&["verify", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains("FAIL RLS on accounts: row level security is disabled"),
        "{said}"
    );
    assert!(said.contains("pass no accounts yet"), "{said}");
    assert!(said.contains("FAIL always false"), "{said}");
    // A check that returns a number, not a boolean, is told in SQL's words.
    assert!(
        said.contains("a count") && said.contains("boolean"),
        "{said}"
    );
    for internal in ["Some(", "None", "Option<", "core::", "Rust type"] {
        assert!(!said.contains(internal), "`{internal}` leaked: {said}");
    }
}

async fn wait_for_activity(db: &TestDb, needle: &str) {
    let mut conn = common::admin().await;
    for _ in 0..200 {
        let busy: bool = sqlx::query_scalar("select exists (select 1 from pg_stat_activity where datname = $1 and query like '%' || $2 || '%' and pid <> pg_backend_pid())")
            .bind(&db.name)
            .bind(needle)
            .fetch_one(&mut conn)
            .await
            .expect("q");
        if busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("steward never started running `{needle}`");
}

async fn wait_until_idle(db: &TestDb) {
    let mut conn = common::admin().await;
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
        )
        .bind(&db.name)
        .fetch_one(&mut conn)
        .await
        .expect("q");
        if n == 0 {
            return;
        }
        // A killed client's backend may sit in pg_sleep; end it as the server would on timeout.
        let _ = sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()")
            .bind(&db.name)
            .execute(&mut conn)
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sessions on {} never ended", db.name);
}
