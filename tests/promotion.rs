//! Production promotion belongs to steward: a Vercel project that auto-assigns its
//! production domains puts every push to the production branch live by itself, so it is
//! blocked until steward takes promotion over; after that a push builds staged, and a
//! production someone else moved is held and reported (who and when), or reverted.
//! Real Postgres, the emulator over HTTP, the CLI as a process.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{SHA1, SHA2, TOKEN, World};
use common::hooks::Receiver;
use common::{assert_exit, stderr, stdout};
use steward::emulator::vercel::promotion::{Commit, Push};

const PUSHED: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

fn push(world: &World, sha: &str) -> String {
    let built = world
        .emulator
        .push(&Push {
            commit: Commit {
                sha: sha.to_owned(),
                author: "octo-dev".to_owned(),
                author_name: Some("Octo Dev".to_owned()),
                message: "Merge pull request #7 from octo/fast-fix".to_owned(),
                branch: "main".to_owned(),
            },
            projects: None,
        })
        .expect("push");
    assert_eq!(built.len(), 1, "the one linked project built the push");
    built[0].1.clone()
}

/// Wait until the emulator's build is READY (it settles, live or staged, then).
async fn ready(world: &World, deployment: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = world.emulator.with_state(|s| {
            let d = &s.deployments[deployment];
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_millis() as u64);
            s.ready_state(d, now)
        });
        if state == "READY" {
            return;
        }
        assert!(Instant::now() < deadline, "{deployment} never READY");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn auto_assign(world: &World) -> bool {
    world.emulator.with_state(|s| {
        s.projects
            .values()
            .find(|p| p.name == "shop-web")
            .expect("project")
            .auto_assign
    })
}

fn all(output: &std::process::Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_main_on_an_auto_promoting_project_goes_live_and_is_blocked_at_adopt_and_in_the_plan_until_taken_over()
 {
    let world = World::new().await;
    world.emulator.set_auto_assign("shop-web", true);
    let pushed = push(&world, PUSHED);
    ready(&world, &pushed).await;
    assert_eq!(
        world.production_sha().as_deref(),
        Some(PUSHED),
        "the risk: a push to main went live by itself"
    );

    let refused = world.steward(&["adopt", "shop"]);
    assert_exit(&refused, 3);
    let said = all(&refused);
    for part in [
        "auto-assigns its production domains",
        "before its migrations",
        "steward adopt shop --take-over-promotion",
        "policy.takeOverPromotion: true",
    ] {
        assert!(said.contains(part), "adopt names `{part}`:\n{said}");
    }
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        all(&plan).contains("auto-assigns its production domains"),
        "the plan is blocked for the same reason:\n{}",
        all(&plan)
    );

    let adopted = world.setup(&["adopt", "shop", "--take-over-promotion"]);
    assert!(
        stdout(&adopted).contains("promotion taken over"),
        "{}",
        all(&adopted)
    );
    assert!(!auto_assign(&world), "auto-assignment is off on Vercel");
    let history = world.setup(&["history", "shop"]);
    assert!(
        stdout(&history).contains("turn it back on"),
        "the take-over is recorded with its undo:\n{}",
        stdout(&history)
    );
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        !all(&plan).contains("auto-assigns its production domains"),
        "no longer blocked:\n{}",
        all(&plan)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_policy_take_over_promotion_the_plan_turns_auto_assignment_off_as_a_step_and_a_push_then_builds_staged()
 {
    let world = World::new().await;
    world.emulator.set_auto_assign("shop-web", true);
    world.write_client(
        SHA1,
        "2024_11_18_001",
        "info",
        "    takeOverPromotion: true\n",
    );
    world.setup(&["adopt", "shop"]);
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        stdout(&plan).contains("take over promotion"),
        "the plan shows the step:\n{}",
        all(&plan)
    );
    let applied = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&applied, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    assert!(
        !auto_assign(&world),
        "off after the apply, though Vercel's promote turns it back on"
    );

    let pushed = push(&world, PUSHED);
    ready(&world, &pushed).await;
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "the push built staged; production did not move"
    );
    let staged = world
        .emulator
        .with_state(|s| !s.deployments[&pushed].promoted);
    assert!(staged, "the pushed build never served");

    // Steady state: one Vercel request per client, with the promotion setting in it.
    world.emulator.reset_stats();
    let steady = world.steward(&["plan", "shop", "--format", "json"]);
    assert_exit(&steady, 0);
    assert_eq!(
        world.emulator.requests(),
        1,
        "a steady plan is one Vercel request"
    );
    let history = world.setup(&["history", "shop"]);
    assert!(
        stdout(&history).contains("take_over_promotion"),
        "{}",
        stdout(&history)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_promoted_by_someone_else_is_held_and_reported_with_who_and_when_until_revert_puts_stewards_sha_back()
 {
    let world = World::new().await;
    let hook = Receiver::start(0).await;
    world.write_fleet(
        &common::repo_root().join("migrations"),
        "  notify:\n    webhooks: [{url: {env: TEST_HOOK_URL}}]\n",
    );
    world.setup(&["adopt", "shop", "--take-over-promotion"]);
    world.setup(&["apply", "shop", "--yes"]);
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));

    // Someone promotes a pushed build in the dashboard.
    let pushed = push(&world, PUSHED);
    ready(&world, &pushed).await;
    let promoted = reqwest::Client::new()
        .post(format!(
            "{}/v10/projects/shop-web/promote/{pushed}",
            world.emulator.base_url
        ))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("promote");
    assert!(promoted.status().is_success());
    assert_eq!(world.production_sha().as_deref(), Some(PUSHED));

    let plan = world.steward(&["plan", "shop"]);
    let said = all(&plan);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for part in [
        "production changed outside steward",
        "c3c3c3c3c3c3",
        "by octo-dev",
        &today,
        "steward apply shop --revert-outside-change",
    ] {
        assert!(said.contains(part), "the plan says `{part}`:\n{said}");
    }
    let json = world.steward(&["plan", "shop", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("plan JSON");
    let change = &json["clients"][0]["outside_change"]["change"];
    assert_eq!(change["by"], "octo-dev", "{json}");
    assert_eq!(change["sha"], PUSHED, "{json}");
    assert!(
        change["at"]
            .as_str()
            .is_some_and(|at| at.starts_with(&today)),
        "{json}"
    );

    let mut daemon = world.command(&["run", "--once"]);
    daemon.env("TEST_HOOK_URL", &hook.url);
    let pass = daemon.output().expect("run");
    assert_eq!(
        world.production_sha().as_deref(),
        Some(PUSHED),
        "held: the daemon deployed nothing:\n{}",
        all(&pass)
    );
    // Vercel's promote turned auto-assignment back on: blocked again until taken over
    // again, which does not make the outside change steward's.
    assert!(all(&world.steward(&["plan", "shop"])).contains("auto-assigns its production domains"));
    world.setup(&["adopt", "shop", "--take-over-promotion"]);
    let status = world.steward(&["status", "shop"]);
    assert!(
        all(&status).contains("production changed outside steward"),
        "{}",
        all(&status)
    );
    let sent = serde_json::to_string(&hook.received()).expect("json");
    assert!(
        sent.contains("production changed outside steward") && sent.contains("octo-dev"),
        "the operators were told: {sent}"
    );

    let reverted = world.steward(&["apply", "shop", "--yes", "--revert-outside-change"]);
    assert_exit(&reverted, 0);
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "steward's commit is back"
    );
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        !all(&plan).contains("production changed outside steward"),
        "{}",
        all(&plan)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinning_the_manifest_to_the_commit_that_went_live_outside_steward_releases_the_hold() {
    let world = World::new().await;
    world.setup(&["adopt", "shop", "--take-over-promotion"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.emulator.set_auto_assign("shop-web", true);
    let pushed = push(&world, SHA2);
    ready(&world, &pushed).await;
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    world.emulator.set_auto_assign("shop-web", false);
    let held = world.steward(&["plan", "shop"]);
    assert!(all(&held).contains("production changed outside steward"));

    world.write_client(SHA2, "2024_11_18_001", "info", "");
    let plan = world.steward(&["plan", "shop", "--detailed-exitcode"]);
    assert_exit(&plan, 0);
}
