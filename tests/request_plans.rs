//! Every command that changes a client is a plan run by the one executor: its `--dry-run`
//! shows the steps the real run then records (intent before each, its outcome after, the
//! run's completion, all under the plan's hash), and refuses with the same exit code and
//! the same words. A real Postgres, the Vercel emulator over HTTP, the `steward` binary.

mod common;

use std::process::Output;

use common::fleet::{SHA2, World};
use common::{assert_exit, stderr, stdout};

/// What a dry run showed: exit code, step kinds, plan hash, command.
struct Shown {
    exit: i32,
    steps: Vec<String>,
    hash: String,
    command: String,
}

fn dry_run(world: &World, args: &[&str]) -> (Shown, Output) {
    let out = world.steward(&[args, &["--dry-run", "--format", "json"]].concat());
    world.assert_no_secret(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: plan JSON: {e}\n{}", stdout(&out)));
    let plan = &json["clients"][0];
    let steps = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"]["kind"].as_str().expect("kind").to_owned())
        .collect();
    let shown = Shown {
        exit: out.status.code().expect("exit code"),
        steps,
        hash: plan["hash"].as_str().expect("hash").to_owned(),
        command: plan["command"].as_str().expect("command").to_owned(),
    };
    (shown, out)
}

/// (step, outcome) of every record written under `hash`, in order.
async fn recorded(world: &World, hash: &str) -> Vec<(String, String)> {
    let mut conn = world.db.connect().await;
    sqlx::query_as("select step, outcome from steward_events where plan_hash = $1 order by id")
        .bind(hash)
        .fetch_all(&mut conn)
        .await
        .expect("read steward_events")
}

/// The dry run of `args`, then the real run: same exit code; a refusal in the same words
/// with nothing recorded; a run that records exactly the steps shown, through the
/// executor. Returns the step kinds shown.
async fn agree(world: &World, args: &[&str]) -> Vec<String> {
    let (shown, dry) = dry_run(world, args);
    let real = world.steward(args);
    world.assert_no_secret(&real);
    assert_exit(&real, shown.exit);
    let records = recorded(world, &shown.hash).await;
    match shown.exit {
        3 => {
            assert_eq!(
                stderr(&dry),
                stderr(&real),
                "{args:?}: refused alike by the dry run and the real run"
            );
            assert!(stderr(&real).contains("refused"), "{}", stderr(&real));
            assert!(
                records.is_empty(),
                "{args:?}: a refused plan ran: {records:?}"
            );
        }
        0 if shown.steps.is_empty() => {
            assert!(
                records.is_empty(),
                "{args:?}: nothing to do, nothing recorded"
            );
        }
        0 => {
            let intents: Vec<&str> = records
                .iter()
                .filter(|(_, o)| o == "intent")
                .map(|(s, _)| s.as_str())
                .collect();
            let changes: Vec<&str> = shown
                .steps
                .iter()
                .map(String::as_str)
                .filter(|s| *s != "record")
                .collect();
            assert_eq!(
                intents, changes,
                "{args:?}: the run recorded an intent for each step the dry run showed"
            );
            for step in &changes {
                let done = records.iter().any(|(s, o)| s == step && o == "succeeded");
                assert!(done, "{args:?}: {step} has its outcome: {records:?}");
            }
            assert_eq!(
                records.first(),
                Some(&(shown.command.clone(), "started".to_owned())),
                "{args:?}"
            );
            assert!(
                records.contains(&(shown.command.clone(), "completed".to_owned())),
                "{args:?}: the run records its completion: {records:?}"
            );
        }
        other => panic!("{args:?}: unexpected exit {other}: {}", stderr(&dry)),
    }
    shown.steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_runs_the_plan_its_dry_run_shows_and_refuses_alike() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    world.setup(&["apply", "shop", "--yes"]);

    // A release whose build fails leaves the client Failed: `retry` has something to clear.
    const SHA3: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
    world.emulator.update_faults(|f| {
        f.fail_shas.insert(SHA3.to_owned());
    });
    world.write_client(SHA3, "2024_11_18_001", "info", "");
    assert_exit(&world.steward(&["apply", "shop", "--yes"]), 1);

    let cases: [(&[&str], &[&str]); 9] = [
        (&["backup", "shop"], &["backup", "record"]),
        (&["retry", "shop"], &["retry", "record"]),
        // An applied row is not repair's to touch.
        (
            &[
                "repair",
                "shop",
                "--version",
                "2024_11_04_001",
                "--mark",
                "rolled-back",
            ],
            &[],
        ),
        (&["retry", "shop"], &[]),
        (&["rollback", "shop", "--code"], &["rollback", "record"]),
        (&["pause", "shop"], &["pause", "record"]),
        (&["unpause", "shop"], &["unpause", "record"]),
        (
            &[
                "restore",
                "shop",
                "--backup",
                "latest",
                "--yes",
                "--pause-traffic",
            ],
            &["pause", "restore", "verify", "unpause", "record"],
        ),
        (
            &["migrate", "shop", "--to", "2024_11_04_001"],
            &["backup", "migrate_down", "record"],
        ),
    ];
    for (args, steps) in cases {
        assert_eq!(agree(&world, args).await, steps, "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_and_drift_accept_run_the_plans_their_dry_runs_show() {
    let world = World::new().await;
    assert_eq!(
        agree(&world, &["adopt", "shop"]).await,
        ["adopt", "schema_reference", "record"],
        "adopting writes the identity and the first schema reference"
    );
    // Adopting again changes nothing, and never takes drift in as the reference.
    assert_eq!(
        agree(&world, &["adopt", "shop"]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        agree(&world, &["drift", "accept", "shop"]).await,
        Vec::<String>::new(),
        "nothing drifted: nothing to accept"
    );
    let mut conn = world.db.connect().await;
    sqlx::raw_sql("create table added_by_hand (id int)")
        .execute(&mut conn)
        .await
        .expect("change the schema by hand");
    let (shown, _) = dry_run(&world, &["drift", "accept", "shop"]);
    assert_eq!(shown.steps, ["schema_reference", "record"]);
    assert_eq!(
        agree(&world, &["adopt", "shop"]).await,
        Vec::<String>::new(),
        "adopting again leaves the reference, and the drift, alone"
    );
    assert_eq!(
        agree(&world, &["drift", "accept", "shop"]).await,
        ["schema_reference", "record"]
    );
    let detail: String = sqlx::query_scalar(
        "select detail from steward_events where step = 'drift' and outcome = 'completed' order by id desc limit 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the acceptance is recorded");
    assert!(detail.contains("added_by_hand"), "{detail}");
    assert_exit(&world.steward(&["drift", "shop"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_under_a_pinned_identity_a_database_never_adopted_is_refused_before_writing() {
    let world = World::new().await;
    let manifest = world.path().join("clients/shop.yaml");
    let text = std::fs::read_to_string(&manifest).expect("read the manifest");
    std::fs::write(
        &manifest,
        text.replacen(
            "    schemaVersion:",
            "    identity: 7d1c0a8e-3f52-4a8e-9b1e-2f3c4d5e6f70\n    schemaVersion:",
            1,
        ),
    )
    .expect("pin an identity");
    let dry = world.steward(&["adopt", "shop", "--dry-run"]);
    let real = world.steward(&["adopt", "shop"]);
    assert_exit(&dry, 3);
    assert_exit(&real, 3);
    assert_eq!(stderr(&dry), stderr(&real));
    assert!(
        stderr(&real).contains("this database was never adopted"),
        "{}",
        stderr(&real)
    );
    let mut conn = world.db.connect().await;
    let written: bool = sqlx::query_scalar("select to_regclass('steward_identity') is not null")
        .fetch_one(&mut conn)
        .await
        .expect("look for the identity table");
    assert!(!written, "a refused adopt writes no identity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_another_clients_database_is_refused_alike_before_anything_is_written() {
    let world = World::new().await;
    let mut conn = world.db.connect().await;
    sqlx::raw_sql(
        "create table steward_identity (client text not null, id uuid not null, adopted_at timestamptz default now(), adopted_by text not null);
         insert into steward_identity (client, id, adopted_by) values ('globex', gen_random_uuid(), 'test');",
    )
    .execute(&mut conn)
    .await
    .expect("seed another client's identity");
    for args in [
        &["backup", "shop"][..],
        &["adopt", "shop"],
        &["drift", "accept", "shop"],
        &["migrate", "shop"],
        &["restore", "shop", "--backup", "latest", "--yes"],
    ] {
        let dry = world.steward(&[args, &["--dry-run"]].concat());
        let real = world.steward(args);
        if args[0] == "restore" {
            // No backup of this client exists at all: an error, the same both ways.
            assert_eq!(dry.status.code(), real.status.code(), "{args:?}");
            continue;
        }
        assert_exit(&dry, 3);
        assert_exit(&real, 3);
        assert!(
            stderr(&real).contains("belongs to client `globex`"),
            "{args:?}: {}",
            stderr(&real)
        );
        assert_eq!(stderr(&dry), stderr(&real), "{args:?}");
    }
    let written: bool = sqlx::query_scalar(
        "select to_regclass('system_versions') is not null or to_regclass('steward_events') is not null",
    )
    .fetch_one(&mut conn)
    .await
    .expect("look for steward's tables");
    assert!(!written, "not even bookkeeping was written");
}
