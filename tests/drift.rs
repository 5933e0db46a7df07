//! Schema drift against a real Postgres, through the `steward` binary: a change made by
//! hand is named, blocks the plan until `steward drift accept`, and `drift --fleet` finds
//! the client that differs from the others at its version.

mod common;

use std::fs;
use std::process::Command;

use common::fleet::World;
use common::{TestDb, assert_exit, stdout};

async fn run_sql(db: &TestDb, sql: &str) {
    let mut conn = db.connect().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_by_hand_is_named_blocks_the_plan_and_drift_accept_clears_it() {
    let world = World::new().await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    assert_exit(&world.steward(&["migrate", "shop"]), 0);
    let clean = world.steward(&["drift", "shop"]);
    assert_exit(&clean, 0);
    assert!(stdout(&clean).contains("matches"), "{}", stdout(&clean));

    run_sql(
        &world.db,
        "alter table accounts add column discount numeric; drop index members_account_id_idx; alter table members disable row level security;",
    )
    .await;
    let drift = world.steward(&["drift", "shop"]);
    assert_exit(&drift, 2);
    let text = stdout(&drift);
    for expected in [
        "column accounts.discount added",
        "index members_account_id_idx dropped",
        "RLS disabled on members",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }

    let preflight = world.steward(&["preflight", "shop"]);
    assert_exit(&preflight, 3);
    assert!(
        stdout(&preflight).contains("FAIL schema as recorded"),
        "{}",
        stdout(&preflight)
    );
    let plan = world.steward(&["plan", "shop"]);
    assert_exit(&plan, 3);
    let text = stdout(&plan);
    assert!(
        text.contains("changed outside steward") && text.contains("column accounts.discount added"),
        "{text}"
    );

    let accept = world
        .command(&["drift", "accept", "shop"])
        .env("STEWARD_ACTOR", "dana")
        .output()
        .expect("steward");
    assert_exit(&accept, 0);
    let mut conn = world.db.connect().await;
    let (actor, detail): (String, String) = sqlx::query_as(
        "select actor, detail from steward_events where step = 'drift' order by id desc limit 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("an update record of the acceptance");
    assert!(actor.contains("dana"), "{actor}");
    assert!(
        detail.contains("column accounts.discount added"),
        "{detail}"
    );

    assert_exit(&world.steward(&["drift", "shop"]), 0);
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        !stdout(&plan).contains("changed outside steward"),
        "{}",
        stdout(&plan)
    );
    assert_ne!(plan.status.code(), Some(3), "{}", stdout(&plan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_under_policy_warn_is_shown_but_does_not_block() {
    let world = World::new().await;
    world.write_client(
        common::fleet::SHA1,
        "2024_11_18_001",
        "info",
        "    drift: warn\n",
    );
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    assert_exit(&world.steward(&["migrate", "shop"]), 0);
    run_sql(
        &world.db,
        "create index accounts_name_idx on accounts (name);",
    )
    .await;
    let plan = world.steward(&["plan", "shop"]);
    assert_ne!(plan.status.code(), Some(3), "{}", stdout(&plan));
    assert!(
        stdout(&plan).contains("index accounts_name_idx added"),
        "{}",
        stdout(&plan)
    );
}

#[tokio::test]
async fn drift_fleet_names_the_one_client_of_three_that_differs_and_how() {
    let dbs = [
        TestDb::create().await,
        TestDb::create().await,
        TestDb::create().await,
    ];
    let names = ["alpha", "bravo", "charlie"];
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("clients")).expect("mkdir");
    fs::write(
        dir.path().join("fleet.yaml"),
        format!(
            "apiVersion: steward/v1\nkind: Fleet\nspec:\n  migrations: {}\n  backups: {{dir: backups}}\n  vercel: {{token: {{env: TEST_VERCEL_TOKEN}}}}\n",
            common::repo_root().join("migrations").display()
        ),
    )
    .expect("fleet.yaml");
    for name in names {
        fs::write(
            dir.path().join(format!("clients/{name}.yaml")),
            format!(
                "apiVersion: steward/v1\nkind: Client\nmetadata: {{name: {name}}}\nspec:\n  code: {{project: {name}-web, version: v1.0.0}}\n  database:\n    url: {{env: TEST_{}_URL}}\n    schemaVersion: 2024_12_02_001\n",
                name.to_uppercase()
            ),
        )
        .expect("client");
    }
    let steward = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
        command
            .args(args)
            .env("STEWARD_FLEET", dir.path())
            .env("TEST_VERCEL_TOKEN", "unused")
            .env("NO_COLOR", "1");
        for (name, db) in names.iter().zip(&dbs) {
            command.env(format!("TEST_{}_URL", name.to_uppercase()), &db.url);
        }
        command.output().expect("steward")
    };
    for name in names {
        assert_exit(
            &steward(&["adopt", name, "--fleet", &dir.path().display().to_string()]),
            0,
        );
        assert_exit(
            &steward(&[
                "migrate",
                name,
                "--fleet",
                &dir.path().display().to_string(),
            ]),
            0,
        );
    }
    let same = steward(&["drift", "--fleet"]);
    assert_exit(&same, 0);

    run_sql(
        &dbs[1],
        "alter table invoices add column discount numeric default 0;",
    )
    .await;
    let fleet = steward(&["drift", "--fleet"]);
    assert_exit(&fleet, 2);
    let text = stdout(&fleet);
    assert!(text.contains("2024_12_02_001: 3 client(s)"), "{text}");
    assert!(text.contains("same schema: alpha, charlie"), "{text}");
    assert!(text.contains("bravo differs from alpha, charlie"), "{text}");
    assert!(text.contains("column invoices.discount added"), "{text}");
}
