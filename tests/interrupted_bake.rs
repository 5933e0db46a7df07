//! Intent before action: a process killed during the bake leaves an `intent` with no
//! outcome; the next apply reports the interruption, bakes the live deployment again and
//! records completion, or undoes the promote when that bake fails.

mod common;

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{SHA1, SHA2, World};
use common::process::{free_addr, terminate};
use common::{assert_exit, stdout};
use sqlx::Row;

/// Write the client at `sha` with `policy.bake: bake`.
fn client_with_bake(world: &World, sha: &str, bake: &str) {
    world.write_client(sha, "2024_11_18_001", "info", "");
    let path = world.path().join("clients/shop.yaml");
    let text = std::fs::read_to_string(&path).expect("client manifest");
    assert!(text.contains("bake: 600ms"), "{text}");
    std::fs::write(&path, text.replace("bake: 600ms", &format!("bake: {bake}")))
        .expect("write client manifest");
}

async fn count(world: &World, sql: &str) -> i64 {
    let mut conn = world.db.connect().await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .expect("count")
        .get::<i64, _>(0)
}

/// How a test stops the process in the middle of its bake.
#[derive(Clone, Copy)]
enum Stop {
    Kill,
    Term,
}

/// Start `apply` on a 20 s bake and SIGKILL it once its bake has begun.
async fn kill_apply_during_the_bake(world: &World) {
    stop_during_the_bake(world, &["apply", "shop", "--yes"], Stop::Kill).await;
}

/// Start `args` on a 20 s bake and stop it once its bake has begun; returns the exit
/// status.
async fn stop_during_the_bake(world: &World, args: &[&str], stop: Stop) -> ExitStatus {
    client_with_bake(world, SHA2, "20s");
    let bakes = "select count(*) from steward_events where step = 'bake' and outcome = 'intent'";
    let before = count(world, bakes).await;
    let mut child = world
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start steward");
    let started = Instant::now();
    while count(world, bakes).await == before {
        if let Some(status) = child.try_wait().expect("child") {
            panic!("steward ended ({status}) before its bake began");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the bake never began"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = match stop {
        Stop::Kill => {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap")
        }
        Stop::Term => terminate(child).await,
    };
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA2),
        "the new build was promoted before the stop"
    );
    assert_eq!(
        count(
            world,
            "select count(*) from steward_events where step = 'apply' and outcome = 'completed'"
        )
        .await,
        1,
        "only the first apply completed"
    );
    status
}

/// Rebakes that passed, and applies recorded completed.
async fn rebaked_and_completed(world: &World) -> (i64, i64) {
    (
        count(
            world,
            "select count(*) from steward_events where step = 'rebake' and outcome = 'succeeded'",
        )
        .await,
        count(
            world,
            "select count(*) from steward_events where step = 'apply' and outcome = 'completed'",
        )
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_during_the_bake_is_reported_and_the_next_apply_bakes_again_and_completes()
{
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    kill_apply_during_the_bake(&world).await;

    // A shorter bake from here on, so the test does not wait 20 s again.
    client_with_bake(&world, SHA2, "1s");
    let plan = world.steward(&["plan", "shop"]);
    assert_exit(&plan, 0);
    assert!(
        stdout(&plan).contains("interrupted during bake at ")
            && stdout(&plan).contains("rebake: the bake of"),
        "the plan reports the interruption and bakes again:\n{}",
        stdout(&plan)
    );

    let history = world.steward(&["history", "shop"]);
    assert_exit(&history, 0);
    assert!(
        stdout(&history)
            .lines()
            .any(|l| l.contains(" bake ") && l.contains(" intent ")),
        "history shows the step that never finished:\n{}",
        stdout(&history)
    );
    let status = world.steward(&["status"]);
    assert_exit(&status, 0);
    assert!(
        stdout(&status).contains("Pending")
            && stdout(&status).contains("interrupted during bake at ")
            && stdout(&status).contains("pending: rebake"),
        "status shows the interruption:\n{}",
        stdout(&status)
    );

    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    assert_eq!(
        count(
            &world,
            "select count(*) from steward_events where step = 'rebake' and outcome = 'succeeded'"
        )
        .await,
        1,
        "the bake ran again"
    );
    assert_eq!(
        count(
            &world,
            "select count(*) from steward_events where step = 'apply' and outcome = 'completed'"
        )
        .await,
        2,
        "the update is recorded completed"
    );
    let plan = world.steward(&["plan", "shop"]);
    assert_exit(&plan, 0);
    assert!(
        !stdout(&plan).contains("interrupted") && !stdout(&plan).contains("rebake"),
        "nothing is left to finish:\n{}",
        stdout(&plan)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bake_that_fails_when_run_again_after_a_kill_puts_the_previous_production_back() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    kill_apply_during_the_bake(&world).await;

    client_with_bake(&world, SHA2, "1s");
    world.emulator.update_faults(|f| {
        f.unhealthy.insert(SHA2.to_owned(), 500);
    });
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("FAILED at rebake") && stdout(&out).contains("undone: rebake"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "the build from before the killed run is production again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_during_the_bake_is_followed_by_a_pass_that_bakes_again_and_completes() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    let addr = free_addr();
    stop_during_the_bake(
        &world,
        &["run", "--listen", &addr, "--interval", "600s"],
        Stop::Kill,
    )
    .await;
    client_with_bake(&world, SHA2, "1s");
    let pass = world.steward(&["run", "--once"]);
    assert_exit(&pass, 0);
    assert!(stdout(&pass).contains("Converged"), "{}", stdout(&pass));
    assert_eq!(rebaked_and_completed(&world).await, (1, 2));
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_stopped_during_the_bake_records_it_unfinished_and_the_next_apply_bakes_again() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    let addr = free_addr();
    let status = stop_during_the_bake(
        &world,
        &["run", "--listen", &addr, "--interval", "600s"],
        Stop::Term,
    )
    .await;
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");
    assert_eq!(
        count(
            &world,
            "select count(*) from steward_events where step = 'apply' and detail like 'interrupted: shutdown during bake%'"
        )
        .await,
        1,
        "the cut-short bake is recorded as such, not as completed"
    );
    client_with_bake(&world, SHA2, "1s");
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(rebaked_and_completed(&world).await, (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_bake_is_still_seen_after_an_operators_request_ran() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    kill_apply_during_the_bake(&world).await;
    // A request run after the killed apply is a run of its own: it does not hide the
    // bake that never finished.
    world.setup(&["backup", "shop"]);
    client_with_bake(&world, SHA2, "1s");
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        stdout(&plan).contains("interrupted during bake at ")
            && stdout(&plan).contains("rebake: the bake of"),
        "{}",
        stdout(&plan)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_killed_during_a_step_is_reported_by_the_next_plan_under_its_command() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    // What a `restore --pause-traffic` killed during its restore step leaves on record:
    // its start, the pause done, the restore's intent and nothing after it.
    let mut conn = world.db.connect().await;
    sqlx::raw_sql(
        "insert into steward_events (client, plan_hash, step, outcome, actor) values
           ('shop', 'feedfacefeedface', 'restore', 'started', 'dana'),
           ('shop', 'feedfacefeedface', 'pause', 'intent', 'dana'),
           ('shop', 'feedfacefeedface', 'pause', 'succeeded', 'dana'),
           ('shop', 'feedfacefeedface', 'restore', 'intent', 'dana')",
    )
    .execute(&mut conn)
    .await
    .expect("write the records of a killed restore");
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        stdout(&plan).contains("`steward restore` interrupted during restore at "),
        "{}",
        stdout(&plan)
    );
    let backup = world.steward(&["backup", "shop", "--dry-run"]);
    assert!(
        stdout(&backup).contains("`steward restore` interrupted during restore at "),
        "a request's plan says so too:\n{}",
        stdout(&backup)
    );
}
