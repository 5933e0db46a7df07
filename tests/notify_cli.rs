//! Changes made at the terminal are announced like the daemon's: `apply`, `rollback
//! --code` and `restore` send to the fleet's webhooks before they exit.

mod common;

use common::fleet::{SHA2, STRIPE, World};
use common::hooks::Receiver;
use common::{assert_exit, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_rollback_and_restore_at_the_terminal_each_notify_the_webhooks() {
    let hook = Receiver::start(0).await;
    let world = World::new().await;
    world.write_fleet(
        &common::repo_root().join("migrations"),
        "  notify:\n    webhooks: [{url: {env: TEST_HOOK_URL}}]\n",
    );
    let run = |args: &[&str]| {
        world
            .command(args)
            .env("TEST_HOOK_URL", &hook.url)
            .output()
            .expect("run steward")
    };
    assert_exit(&run(&["adopt", "shop"]), 0);
    assert_exit(&run(&["backup", "shop"]), 0);
    assert_exit(&run(&["apply", "shop", "--yes"]), 0);
    assert_eq!(
        hook.events_for("shop"),
        ["before-update", "after-update"],
        "{:?}",
        hook.received()
    );

    world.write_client(SHA2, "2024_11_18_001", "info", "");
    assert_exit(&run(&["apply", "shop", "--yes"]), 0);
    let rollback = run(&["rollback", "shop", "--code"]);
    assert_exit(&rollback, 0);
    let restore = run(&["restore", "shop", "--backup", "latest", "--yes"]);
    assert_exit(&restore, 0);

    let texts: Vec<String> = hook
        .received()
        .iter()
        .filter(|m| m["steward"]["event"] == "rollback")
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("production rolled back by hand"),
        "{texts:?}"
    );
    assert!(texts[1].contains("database restored by hand"), "{texts:?}");
    let bodies = serde_json::to_string(&hook.received()).expect("json");
    assert!(!bodies.contains(STRIPE), "a secret reached a webhook");
    assert!(
        !stderr(&restore).contains(&hook.url),
        "webhook URLs are credentials and never printed"
    );
}
