//! Migrations tell the truth, against a real Postgres through the `steward` binary:
//! transaction control is refused before anything runs, errors name the failing
//! statement's line and say exactly which versions committed, and `repair` and
//! `adopt --baseline` refuse what would make `system_versions` lie.

mod common;

use common::schema_fleet::{SchemaFleet, table_exists, versions};
use common::{TestDb, assert_exit, stderr, stdout};

const ACCOUNTS: (&str, &str) = (
    "2024_01_01_001_accounts.up.sql",
    "create table accounts (id int primary key);\n",
);

/// An adopted one-client fleet over a fresh database.
async fn adopted(migrations: &[(&str, &str)], schema_version: &str) -> (TestDb, SchemaFleet) {
    let db = TestDb::create().await;
    let fleet = SchemaFleet::new(&db, migrations, schema_version);
    assert_exit(&fleet.run(&["adopt", "shop"]), 0);
    (db, fleet)
}

fn applied(versions: &[&str]) -> Vec<(String, String)> {
    versions
        .iter()
        .map(|v| ((*v).to_owned(), "applied".to_owned()))
        .collect()
}

async fn execute(db: &TestDb, sql: &str) {
    let mut conn = db.connect().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

#[tokio::test]
async fn a_commit_in_a_migration_is_a_lint_error_and_refused_with_nothing_applied() {
    let migrations = [
        ACCOUNTS,
        (
            "2024_01_02_001_members.up.sql",
            "create table members (id int);\ncommit;\ncreate table late (id int);\n",
        ),
        (
            "2024_01_03_001_more.up.sql",
            "create table more (id int);\n",
        ),
    ];
    let (db, fleet) = adopted(&migrations, "2024_01_03_001").await;

    let lint = fleet.run(&["lint"]);
    assert_exit(&lint, 1);
    assert!(
        stdout(&lint).contains(
            "2024_01_02_001_members.up.sql:2: error: transaction-control: COMMIT controls the transaction"
        ),
        "{}",
        stdout(&lint)
    );

    for args in [&["migrate", "shop", "--dry-run"][..], &["migrate", "shop"]] {
        let out = fleet.run(args);
        assert_exit(&out, 3);
        let err = stderr(&out);
        assert!(
            err.contains("refused before anything ran")
                && err.contains("2024_01_02_001_members.up.sql:2"),
            "{args:?}: {err}"
        );
    }
    assert!(versions(&db).await.is_empty(), "no version recorded");
    for table in ["accounts", "members", "late"] {
        assert!(!table_exists(&db, table).await, "{table} was created");
    }
}

#[tokio::test]
async fn a_sql_standard_function_body_runs_in_a_no_transaction_migration() {
    // Its `;`s are inside the body: split there, each half is a syntax error.
    let migrations = [
        ACCOUNTS,
        (
            "2024_01_02_001_count.up.sql",
            "-- steward: no-transaction\ncreate index concurrently accounts_by_id on accounts (id);\n\ncreate procedure add_account(n int) language sql\nbegin atomic\n  insert into accounts values (n);\n  insert into accounts values (n + 1);\nend;\n",
        ),
    ];
    let (db, fleet) = adopted(&migrations, "2024_01_02_001").await;
    assert_exit(&fleet.run(&["migrate", "shop"]), 0);
    execute(&db, "call add_account(10)").await;
    let mut conn = db.connect().await;
    let count: i64 = sqlx::query_scalar("select count(*) from accounts")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(count, 2, "the procedure's whole body was created");
}

#[tokio::test]
async fn a_runtime_error_names_the_file_and_the_line_of_the_failing_statement() {
    // A unique violation carries no position: only the statement's own line can say where.
    let migrations = [
        ACCOUNTS,
        (
            "2024_01_02_001_seed.up.sql",
            "insert into accounts values (1);\n\n-- the same id again\ninsert into accounts\n  values (1);\n",
        ),
    ];
    let (db, fleet) = adopted(&migrations, "2024_01_02_001").await;
    let out = fleet.run(&["migrate", "shop"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("migration 2024_01_02_001 failed at")
            && err.contains("2024_01_02_001_seed.up.sql:4: duplicate key value"),
        "{err}"
    );
    assert!(
        err.contains(
            "nothing of this run was applied; not applied: 2024_01_01_001, 2024_01_02_001"
        ),
        "{err}"
    );
    assert!(versions(&db).await.is_empty());
}

#[tokio::test]
async fn a_failure_after_a_no_transaction_migration_says_which_versions_committed() {
    let migrations = [
        ACCOUNTS,
        (
            "2024_01_02_001_index.up.sql",
            "-- steward: no-transaction\ncreate index concurrently accounts_by_id on accounts (id);\n",
        ),
        (
            "2024_01_03_001_members.up.sql",
            "create table members (id int);\nselect 1 / 0;\n",
        ),
        (
            "2024_01_04_001_more.up.sql",
            "create table more (id int);\n",
        ),
    ];
    let (db, fleet) = adopted(&migrations, "2024_01_04_001").await;
    let out = fleet.run(&["migrate", "shop"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("2024_01_03_001_members.up.sql:2: division by zero"),
        "{err}"
    );
    assert!(
        err.contains(
            "committed before the failure, and now applied: 2024_01_01_001, 2024_01_02_001; not applied: 2024_01_03_001, 2024_01_04_001"
        ),
        "{err}"
    );
    assert!(!err.contains("nothing of this run"), "{err}");
    let latest: Vec<(String, String)> = versions(&db)
        .await
        .into_iter()
        .filter(|(_, status)| status != "in_progress")
        .collect();
    assert_eq!(latest, applied(&["2024_01_01_001", "2024_01_02_001"]));
    assert!(table_exists(&db, "accounts").await && !table_exists(&db, "members").await);
}

#[tokio::test]
async fn a_no_transaction_migration_that_fails_part_way_says_its_first_statements_stay_committed() {
    let migrations = [
        ACCOUNTS,
        (
            "2024_01_02_001_split.up.sql",
            "-- steward: no-transaction\ncreate table a (id int);\ncreate table b (id int);\ninsert into a values (1 / 0);\ncreate table c (id int);\n",
        ),
    ];
    let (db, fleet) = adopted(&migrations, "2024_01_02_001").await;
    let out = fleet.run(&["migrate", "shop"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("2024_01_02_001_split.up.sql:4: division by zero"),
        "{err}"
    );
    assert!(
        err.contains(
            "committed before the failure, and now applied: 2024_01_01_001; 2024_01_02_001 runs outside a transaction: its first 2 statements stay committed, and it is recorded `failed` until `steward repair`"
        ),
        "{err}"
    );
    assert!(table_exists(&db, "b").await && !table_exists(&db, "c").await);
    assert_eq!(
        versions(&db).await.last(),
        Some(&("2024_01_02_001".to_owned(), "failed".to_owned()))
    );
}

#[tokio::test]
async fn repair_refuses_to_mark_an_applied_version_rolled_back() {
    let (db, fleet) = adopted(&[ACCOUNTS], "2024_01_01_001").await;
    assert_exit(&fleet.run(&["migrate", "shop"]), 0);
    let out = fleet.run(&[
        "repair",
        "shop",
        "--version",
        "2024_01_01_001",
        "--mark",
        "rolled-back",
    ]);
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("repair refused: 2024_01_01_001 is `applied`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(versions(&db).await, applied(&["2024_01_01_001"]));
    assert!(table_exists(&db, "accounts").await);
}

#[tokio::test]
async fn repair_refuses_to_mark_an_edited_migration_applied() {
    let broken = (
        "2024_01_02_001_index.up.sql",
        "-- steward: no-transaction\ncreate index concurrently members_by_id on members (id);\n",
    );
    let (db, fleet) = adopted(&[ACCOUNTS, broken], "2024_01_02_001").await;
    assert_exit(&fleet.run(&["migrate", "shop"]), 1);
    assert_eq!(
        versions(&db).await.last(),
        Some(&("2024_01_02_001".to_owned(), "failed".to_owned()))
    );
    fleet.write_migration(
        broken.0,
        "-- steward: no-transaction\ncreate index concurrently accounts_by_id on accounts (id);\n",
    );
    let repair = |mark| {
        fleet.run(&[
            "repair",
            "shop",
            "--version",
            "2024_01_02_001",
            "--mark",
            mark,
        ])
    };

    let out = repair("applied");
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("2024_01_02_001 cannot be marked applied")
            && stderr(&out).contains("was edited since the run that failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        versions(&db).await.last(),
        Some(&("2024_01_02_001".to_owned(), "failed".to_owned())),
        "nothing recorded"
    );

    // The way out it names: mark it rolled back, then migrate runs the fixed file.
    assert_exit(&repair("rolled-back"), 0);
    assert_exit(&fleet.run(&["migrate", "shop"]), 0);
    assert_eq!(
        versions(&db).await.last(),
        Some(&("2024_01_02_001".to_owned(), "applied".to_owned()))
    );
}

fn with_verify() -> Vec<(&'static str, &'static str)> {
    vec![
        ACCOUNTS,
        (
            "2024_01_01_001_accounts.verify.sql",
            "select to_regclass('accounts') is not null;\n",
        ),
        (
            "2024_01_02_001_members.up.sql",
            "create table members (id int);\n",
        ),
        (
            "2024_01_02_001_members.verify.sql",
            "select to_regclass('accounts') is not null;\nselect to_regclass('members') is not null;\n",
        ),
        (
            "2024_01_03_001_more.up.sql",
            "create table more (id int);\n",
        ),
    ]
}

#[tokio::test]
async fn a_baseline_whose_verify_file_fails_is_refused_naming_the_version_and_why() {
    let db = TestDb::create().await;
    // Migrated by hand up to the first migration only.
    execute(&db, "create table accounts (id int primary key)").await;
    let fleet = SchemaFleet::new(&db, &with_verify(), "2024_01_03_001");
    let dry = fleet.run(&["adopt", "shop", "--baseline", "2024_01_03_001", "--dry-run"]);
    let out = fleet.run(&["adopt", "shop", "--baseline", "2024_01_03_001"]);
    assert_exit(&dry, 3);
    assert_exit(&out, 3);
    assert_eq!(stderr(&dry), stderr(&out), "refused alike by the dry run");
    let err = stderr(&out);
    assert!(
        err.contains(
            "the database is not at --baseline 2024_01_03_001: 2024_01_02_001 fails its check at"
        ) && err
            .contains("2024_01_02_001_members.verify.sql:2: verify returned false, expected true"),
        "{err}"
    );
    assert!(versions(&db).await.is_empty(), "nothing recorded");
    assert!(
        !table_exists(&db, "steward_identity").await,
        "a refused baseline does not adopt either"
    );
}

#[tokio::test]
async fn a_baseline_above_the_versions_the_guides_process_recorded_is_refused() {
    let db = TestDb::create().await;
    execute(
        &db,
        "create table accounts (id int primary key);
         create table system_versions (version text not null, applied_at timestamptz not null default now(), status text not null default 'applied');
         insert into system_versions (version, status) values ('2024_01_01_001', 'applied');",
    )
    .await;
    let migrations = [
        ACCOUNTS,
        (
            "2024_01_02_001_members.up.sql",
            "create table members (id int);\n",
        ),
        (
            "2024_01_03_001_more.up.sql",
            "create table more (id int);\n",
        ),
    ];
    let fleet = SchemaFleet::new(&db, &migrations, "2024_01_03_001");
    let out = fleet.run(&["adopt", "shop", "--baseline", "2024_01_03_001"]);
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains(
            "system_versions records 2024_01_01_001 as the latest applied version, and 2024_01_02_001, 2024_01_03_001 above it (up to --baseline 2024_01_03_001) have no .verify.sql to show they ran"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(versions(&db).await, applied(&["2024_01_01_001"]));
}

#[tokio::test]
async fn a_baseline_says_how_many_versions_it_will_record_before_recording_them() {
    let db = TestDb::create().await;
    execute(
        &db,
        "create table accounts (id int primary key); create table members (id int);",
    )
    .await;
    let fleet = SchemaFleet::new(&db, &with_verify(), "2024_01_03_001");
    let dry = fleet.run(&["adopt", "shop", "--baseline", "2024_01_02_001", "--dry-run"]);
    assert_exit(&dry, 0);
    assert!(
        stdout(&dry).contains("baseline 2024_01_02_001: record 2024_01_01_001, 2024_01_02_001 as applied (2 shown by .verify.sql, 0 on your word; 0 kept)"),
        "the dry run shows the baseline step:\n{}",
        stdout(&dry)
    );
    assert!(versions(&db).await.is_empty(), "a dry run records nothing");
    assert!(!table_exists(&db, "steward_identity").await);
    let out = fleet.run(&["adopt", "shop", "--baseline", "2024_01_02_001"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let announced = text
        .find("baseline 2024_01_02_001: 2 version(s) will be recorded as applied (2 confirmed by their .verify.sql, 0 without one, taken as applied on your word), 0 already recorded and kept")
        .unwrap_or_else(|| panic!("{text}"));
    let done = text
        .find("2 version(s) recorded as applied")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(announced < done, "{text}");
    assert_eq!(
        versions(&db).await,
        applied(&["2024_01_01_001", "2024_01_02_001"])
    );
}

#[tokio::test]
async fn a_dry_run_down_through_an_irreversible_migration_refuses_like_the_real_run() {
    let migrations = [
        ACCOUNTS,
        ("2024_01_01_001_accounts.down.sql", "drop table accounts;\n"),
        (
            "2024_01_02_001_members.up.sql",
            "create table members (id int);\n",
        ),
    ];
    let (db, fleet) = adopted(&migrations, "2024_01_02_001").await;
    assert_exit(&fleet.run(&["migrate", "shop"]), 0);
    let dry = fleet.run(&["migrate", "shop", "--to", "2024_01_01_001", "--dry-run"]);
    let real = fleet.run(&["migrate", "shop", "--to", "2024_01_01_001"]);
    assert_exit(&dry, 3);
    assert_exit(&real, 3);
    assert!(
        stderr(&dry).contains("migration 2024_01_02_001 (members) has no .down.sql"),
        "{}",
        stderr(&dry)
    );
    assert_eq!(stderr(&dry), stderr(&real));
    assert_eq!(
        versions(&db).await,
        applied(&["2024_01_01_001", "2024_01_02_001"])
    );
}
