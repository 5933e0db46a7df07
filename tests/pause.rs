//! The emergency stop: `steward pause` stops every URL of the client's project (503) and
//! `steward unpause` lets traffic through again, both plans on record (intent, outcome,
//! the run's completion); `restore --pause-traffic` is pause, restore, verify, unpause,
//! refused before any pause when the dump is unusable, and the pause's undo lets traffic
//! through again when a step after it fails. The emulator over real HTTP, a real
//! Postgres, and the `steward` binary.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::fleet::World;
use common::{assert_exit, stderr, stdout};

/// The status a request to the client's production URL gets, through the emulator's
/// deployment host routing (the `Host` header picks the deployment).
async fn production_status(world: &World) -> u16 {
    let http = reqwest::Client::builder()
        .resolve(
            "shop-web.vercel.app",
            world.emulator.addr, // the emulator answers deployment hosts on its own port
        )
        .build()
        .expect("http client");
    let url = format!(
        "http://shop-web.vercel.app:{}/api/health",
        world.emulator.addr.port()
    );
    http.get(url)
        .send()
        .await
        .expect("the deployment URL answers")
        .status()
        .as_u16()
}

fn paused(world: &World) -> bool {
    world.emulator.with_state(|s| {
        s.projects
            .values()
            .find(|p| p.name == "shop-web")
            .is_some_and(|p| p.paused)
    })
}

/// (actor, detail) of the records of `step` with `outcome`, oldest first.
async fn events(world: &World, step: &str, outcome: &str) -> Vec<(String, String)> {
    let mut conn = world.db.connect().await;
    let table: bool = sqlx::query_scalar("select to_regclass('steward_events') is not null")
        .fetch_one(&mut conn)
        .await
        .expect("look for steward_events");
    if !table {
        return Vec::new();
    }
    sqlx::query_as(
        "select actor, coalesce(detail, '') from steward_events where step = $1 and outcome = $2 order by id",
    )
    .bind(step)
    .bind(outcome)
    .fetch_all(&mut conn)
    .await
    .expect("read steward_events")
}

/// Wait (with a deadline) until production serves, after the apply's promote.
async fn wait_serving(world: &World) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while production_status(world).await != 200 {
        assert!(Instant::now() < deadline, "production never served 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_every_request_with_503_and_unpause_serves_again_both_on_record() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    wait_serving(&world).await;

    let paused_run = world
        .command(&["pause", "shop"])
        .env("STEWARD_ACTOR", "alice (on call)")
        .output()
        .expect("run steward");
    assert_exit(&paused_run, 0);
    assert!(
        stdout(&paused_run).contains("shop: project shop-web paused"),
        "{}",
        stdout(&paused_run)
    );
    assert!(paused(&world));
    assert_eq!(production_status(&world).await, 503);

    // A release due while paused waits: its checks could only see 503.
    world.write_client(common::fleet::SHA2, "2024_11_18_001", "info", "");
    let held = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&held, 3);
    let said = format!("{}{}", stdout(&held), stderr(&held));
    assert!(said.contains("steward unpause shop"), "{said}");
    assert_eq!(
        world.production_sha().as_deref(),
        Some(common::fleet::SHA1),
        "nothing was deployed while paused"
    );

    let status = world.steward(&["status", "shop"]);
    assert!(
        stdout(&status).contains("paused"),
        "status shows the stop:\n{}",
        stdout(&status)
    );

    let unpaused_run = world
        .command(&["unpause", "shop"])
        .env("STEWARD_ACTOR", "alice (on call)")
        .output()
        .expect("run steward");
    assert_exit(&unpaused_run, 0);
    assert!(!paused(&world));
    assert_eq!(production_status(&world).await, 200);

    for step in ["pause", "unpause"] {
        // Through the executor: the intent before the change, its outcome after it, and
        // the run's own record, each naming the actor.
        for outcome in ["started", "intent", "succeeded", "completed"] {
            let recorded = events(&world, step, outcome).await;
            assert_eq!(
                recorded.len(),
                1,
                "{step} {outcome} recorded once: {recorded:?}"
            );
            assert_eq!(recorded[0].0, "alice (on call)", "{step} names the actor");
        }
    }
    let history = world.steward(&["history", "shop"]);
    assert!(
        stdout(&history).contains("unpaused"),
        "history shows the stop and its end:\n{}",
        stdout(&history)
    );
    world.assert_no_secret(&paused_run);
}

/// The newest dump in the fleet's backups folder (ids are timestamps, so names sort).
fn newest_dump(world: &World) -> PathBuf {
    let dir = world.path().join("backups/shop");
    let mut dumps: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("backups folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "dump"))
        .collect();
    dumps.sort();
    dumps.pop().expect("a dump")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_pause_traffic_refuses_an_altered_dump_before_stopping_any_traffic() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.setup(&["backup", "shop"]);
    wait_serving(&world).await;
    // A dump changed after it was taken: the plan refuses it (exit 3), before its pause.
    let dump = newest_dump(&world);
    let mut bytes = fs::read(&dump).expect("read dump");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&dump, &bytes).expect("write dump");

    let args = [
        "restore",
        "shop",
        "--backup",
        "latest",
        "--yes",
        "--pause-traffic",
    ];
    let dry = world.steward(&[&args[..], &["--dry-run"]].concat());
    let restore = world.steward(&args);
    for run in [&dry, &restore] {
        assert_exit(run, 3);
        let said = format!("{}{}", stdout(run), stderr(run));
        assert!(said.contains("SHA-256"), "the refusal says why:\n{said}");
    }
    assert!(!paused(&world), "traffic was never stopped");
    assert_eq!(production_status(&world).await, 200);
    for step in ["pause", "restore", "unpause"] {
        assert!(
            events(&world, step, "intent").await.is_empty(),
            "no step of a refused plan ran: {step}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_pause_traffic_unpauses_again_when_a_step_after_the_pause_fails() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.setup(&["backup", "shop"]);
    wait_serving(&world).await;
    // The restored database fails a verify check, after the pause and the restore ran.
    let manifest = world.path().join("clients/shop.yaml");
    let text = fs::read_to_string(&manifest).expect("read manifest");
    fs::write(
        &manifest,
        text.replace(
            "verify: {rlsTables: [accounts]}",
            "verify: {rlsTables: [accounts], checks: [{name: never, sql: \"select false\"}]}",
        ),
    )
    .expect("write manifest");

    let restore = world.steward(&[
        "restore",
        "shop",
        "--backup",
        "latest",
        "--yes",
        "--pause-traffic",
    ]);
    assert_exit(&restore, 1);
    let said = stderr(&restore);
    assert!(
        said.contains("FAILED at verify") && said.contains("undone: pause"),
        "the failure and the undo are told:\n{said}"
    );
    assert!(
        !paused(&world),
        "the pause's undo let traffic through again"
    );
    assert_eq!(production_status(&world).await, 200);
    assert_eq!(events(&world, "pause", "succeeded").await.len(), 1);
    assert_eq!(events(&world, "pause", "undone").await.len(), 1);
    assert_eq!(events(&world, "verify", "failed").await.len(), 1);
    assert_eq!(
        events(&world, "restore", "rolled_back").await.len(),
        1,
        "the run records that it was rolled back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_pause_traffic_pauses_restores_verifies_and_serves_again() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.setup(&["backup", "shop"]);
    wait_serving(&world).await;

    let restore = world.steward(&[
        "restore",
        "shop",
        "--backup",
        "latest",
        "--yes",
        "--pause-traffic",
    ]);
    assert_exit(&restore, 0);
    let out = stdout(&restore);
    let paused_at = out.find("paused:").expect("the pause is reported");
    let restored_at = out
        .find("restored backup")
        .expect("the restore is reported");
    let verified_at = out
        .find("verified schema")
        .expect("the verification is reported");
    let unpaused_at = out.find("unpaused").expect("the unpause is reported");
    assert!(
        paused_at < restored_at && restored_at < verified_at && verified_at < unpaused_at,
        "pause, restore, verify, unpause, in that order:\n{out}"
    );
    assert!(!paused(&world));
    assert_eq!(production_status(&world).await, 200);
    // The restore's run, by its plan hash: each step's intent and outcome, in order.
    let mut conn = world.db.connect().await;
    let run: Vec<(String, String)> = sqlx::query_as(
        "select step, outcome from steward_events where plan_hash = (select plan_hash from steward_events where step = 'restore' and outcome = 'completed') order by id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read the restore's run");
    let said: Vec<String> = run.iter().map(|(s, o)| format!("{s} {o}")).collect();
    assert_eq!(
        said,
        [
            "restore started",
            "pause intent",
            "pause succeeded",
            "restore intent",
            "restore succeeded",
            "verify intent",
            "verify succeeded",
            "unpause intent",
            "unpause succeeded",
            "restore completed",
            "record succeeded",
        ],
        "every step through the executor, intent before outcome"
    );
}
