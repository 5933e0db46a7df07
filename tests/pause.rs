//! The emergency stop: `steward pause` stops every URL of the client's project (503) and
//! `steward unpause` lets traffic through again, both on record; `restore --pause-traffic`
//! lets traffic through again when the restore fails. The emulator over real HTTP, a real
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

async fn events(world: &World, step: &str) -> Vec<(String, String, String)> {
    let mut conn = world.db.connect().await;
    sqlx::query_as(
        "select outcome, actor, coalesce(detail, '') from steward_events where step = $1 order by id",
    )
    .bind(step)
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
        let recorded = events(&world, step).await;
        assert_eq!(recorded.len(), 1, "{step} recorded once: {recorded:?}");
        assert_eq!(recorded[0].0, "manual");
        assert_eq!(recorded[0].1, "alice (on call)", "{step} names the actor");
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
async fn restore_with_pause_traffic_unpauses_again_when_the_restore_fails_and_keeps_its_exit_code()
{
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.setup(&["backup", "shop"]);
    wait_serving(&world).await;
    // A dump changed after it was taken: the restore refuses it (exit 3).
    let dump = newest_dump(&world);
    let mut bytes = fs::read(&dump).expect("read dump");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&dump, &bytes).expect("write dump");

    let restore = world.steward(&[
        "restore",
        "shop",
        "--backup",
        "latest",
        "--yes",
        "--pause-traffic",
    ]);
    assert_exit(&restore, 3);
    assert!(
        stderr(&restore).contains("SHA-256"),
        "the restore's own error is reported:\n{}",
        stderr(&restore)
    );
    assert!(!paused(&world), "the project is unpaused again");
    assert_eq!(production_status(&world).await, 200);
    assert_eq!(
        events(&world, "pause").await.len(),
        1,
        "the pause is on record"
    );
    assert_eq!(events(&world, "unpause").await.len(), 1, "so is its undo");
    assert!(
        events(&world, "restore").await.is_empty(),
        "no refused restore ran"
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
        .find("verify shop")
        .expect("the verification is reported");
    let unpaused_at = out.find("unpaused").expect("the unpause is reported");
    assert!(
        paused_at < restored_at && restored_at < verified_at && verified_at < unpaused_at,
        "pause, restore, verify, unpause, in that order:\n{out}"
    );
    assert!(!paused(&world));
    assert_eq!(production_status(&world).await, 200);
    assert_eq!(events(&world, "restore").await.len(), 1);
    assert_eq!(events(&world, "unpause").await.len(), 1);
}
