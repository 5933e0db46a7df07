//! `steward run` across waves, halting on failures, and update notifications.

mod common;

use std::fs;

use common::fleet::{SHA1, SHA2, STRIPE, TOKEN, World};
use common::hooks::Receiver;
use common::{TestDb, repo_root, stderr, stdout};

/// `shop` in wave `canary`, `beta` (its own database and project) in wave `rest`.
async fn two_waves(notify: &str) -> (World, TestDb) {
    let world = World::new().await;
    world.write_fleet(
        &repo_root().join("migrations"),
        &format!("  waves: [canary, rest]\n  rollout: {{maxFailures: 0}}\n{notify}"),
    );
    world.write_client(SHA1, "2024_11_18_001", "info", "  wave: canary\n");
    let beta = TestDb::create().await;
    world.emulator.create_project("beta-web", None);
    world.emulator.set_auto_assign("beta-web", false);
    write_beta(&world, SHA1);
    let adopt = world
        .command(&["adopt", "beta"])
        .env("TEST_BETA_DATABASE_URL", &beta.url)
        .output()
        .expect("adopt");
    assert_eq!(adopt.status.code(), Some(0), "{}", stderr(&adopt));
    assert_eq!(world.steward(&["adopt", "shop"]).status.code(), Some(0));
    (world, beta)
}

fn write_beta(world: &World, sha: &str) {
    fs::write(
        world.path().join("clients/beta.yaml"),
        format!(
            "apiVersion: steward/v1\nkind: Client\nmetadata: {{name: beta}}\nspec:\n  wave: rest\n  code: {{project: beta-web, version: {sha}}}\n  database:\n    url: {{env: TEST_BETA_DATABASE_URL}}\n    schemaVersion: 2024_11_18_001\n    verify: {{rlsTables: [accounts]}}\n  env:\n    LOG_LEVEL: info\n  policy: {{apply: auto, bake: 600ms, health: {{path: /api/health, timeout: 2s}}}}\n"
        ),
    )
    .expect("write beta");
}

fn run_once(world: &World, beta: &TestDb, extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut command = world.command(&["run", "--once"]);
    command.env("TEST_BETA_DATABASE_URL", &beta.url);
    for (k, v) in extra_env {
        command.env(k, v);
    }
    command.output().expect("run")
}

fn production_sha(world: &World, project: &str) -> Option<String> {
    world.emulator.with_state(|s| {
        let p = s.projects.values().find(|p| p.name == project)?;
        let id = p.production.as_ref()?;
        s.deployments.get(id).map(|d| d.sha.clone())
    })
}

fn deployments_of(world: &World, project: &str) -> usize {
    world.emulator.with_state(|s| {
        let Some(p) = s.projects.values().find(|p| p.name == project) else {
            return 0;
        };
        s.deployments
            .values()
            .filter(|d| d.project_id == p.id)
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_canary_halts_the_rollout_so_later_waves_never_start_until_it_converges() {
    let hook = Receiver::start(0).await;
    let (world, beta) = two_waves("  notify:\n    webhooks: [{url: {env: TEST_HOOK_URL}}]\n").await;
    world.write_client(SHA2, "2024_11_18_001", "info", "  wave: canary\n");
    world.emulator.update_faults(|f| {
        f.fail_shas.insert(SHA2.to_owned());
    });

    let halted = run_once(&world, &beta, &[("TEST_HOOK_URL", &hook.url)]);
    assert_eq!(halted.status.code(), Some(1), "{}", stderr(&halted));
    assert!(
        stdout(&halted).contains("rollout halted: 1 client(s) failed in wave `canary`"),
        "the halt says why:\n{}",
        stdout(&halted)
    );
    assert_eq!(
        deployments_of(&world, "beta-web"),
        0,
        "the later wave started nothing"
    );
    assert_eq!(production_sha(&world, "shop-web"), None);
    let shop_events = hook.events_for("shop");
    assert!(
        shop_events.contains(&"failure".to_owned()) && shop_events.contains(&"rollback".to_owned()),
        "the failure and its rollback are announced: {shop_events:?}"
    );
    assert!(hook.events_for("beta").is_empty(), "beta was never updated");

    // Fix the canary: the next pass converges it, then lets the later wave go.
    world.write_client(SHA1, "2024_11_18_001", "info", "  wave: canary\n");
    let resumed = run_once(&world, &beta, &[("TEST_HOOK_URL", &hook.url)]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert_eq!(production_sha(&world, "shop-web").as_deref(), Some(SHA1));
    assert_eq!(production_sha(&world, "beta-web").as_deref(), Some(SHA1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_announced_before_and_after_and_a_dead_webhook_never_blocks_the_rollout() {
    // The first two deliveries fail with 500: retries must get the messages through.
    let flaky = Receiver::start(2).await;
    let dead = "http://127.0.0.1:9/hook-dead";
    let (world, beta) = two_waves(
        "  notify:\n    webhooks:\n      - {url: {env: TEST_HOOK_URL}, events: [before-update, after-update]}\n      - {url: {env: TEST_DEAD_HOOK_URL}}\n",
    )
    .await;
    let out = run_once(
        &world,
        &beta,
        &[("TEST_HOOK_URL", &flaky.url), ("TEST_DEAD_HOOK_URL", dead)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for client in ["shop", "beta"] {
        assert_eq!(
            flaky.events_for(client),
            ["before-update", "after-update"],
            "{:?}",
            flaky.received()
        );
    }
    assert!(flaky.attempts() >= 6, "two 500s were retried");
    let before = flaky
        .received()
        .into_iter()
        .find(|m| m["steward"]["event"] == "before-update")
        .expect("before-update");
    let text = before["text"].as_str().expect("slack text");
    assert!(
        text.contains("migration") && text.contains("2024_11_18_001"),
        "before-update says what will happen: {text}"
    );
    let bodies = serde_json::to_string(&flaky.received()).expect("json");
    for secret in [STRIPE, TOKEN] {
        assert!(!bodies.contains(secret), "a secret reached a webhook");
    }
    let logs = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !logs.contains("hook-dead") && !logs.contains(&flaky.url),
        "webhook URLs are credentials and never logged:\n{logs}"
    );
}
