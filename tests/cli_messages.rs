//! Messages read as words: who acted is named once and plainly, and an error from Vercel
//! is printed once, not once per layer that passed it on.

mod common;

use common::fleet::{SHA1, World};
use common::{assert_exit, stderr, stdout};

async fn applied_by(world: &World) -> Vec<String> {
    let mut conn = world.db.connect().await;
    sqlx::query_scalar(
        "select distinct applied_by from system_versions where applied_by is not null",
    )
    .fetch_all(&mut conn)
    .await
    .expect("applied_by")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_records_itself_as_the_steward_daemon_and_nothing_more() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    let out = world
        .command(&["run", "--once"])
        .env_remove("STEWARD_ACTOR")
        .output()
        .expect("run");
    assert_exit(&out, 0);
    assert_eq!(applied_by(&world).await, ["steward daemon"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_actor_is_recorded_as_given() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    let out = world
        .command(&["apply", "shop", "--yes"])
        .env("STEWARD_ACTOR", "ci (pull request 42)")
        .output()
        .expect("apply");
    assert_exit(&out, 0);
    assert_eq!(applied_by(&world).await, ["ci (pull request 42)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_vercel_does_not_know_is_reported_once_with_no_rust_in_it() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.write_client(SHA1, "2024_11_18_001", "info", "");
    let manifest = world.path().join("clients/shop.yaml");
    let text = std::fs::read_to_string(&manifest).expect("read");
    std::fs::write(
        &manifest,
        text.replace("project: shop-web", "project: nowhere-web"),
    )
    .expect("write");
    let out = world.steward(&["plan", "shop"]);
    assert_ne!(out.status.code(), Some(0));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("nowhere-web"), "the project is named: {said}");
    assert_eq!(
        said.matches("404").count() + said.matches("not found").count(),
        1,
        "the answer is said once: {said}"
    );
    for internal in ["Some(", "None", "Error {", "core::", "sqlx::"] {
        assert!(!said.contains(internal), "`{internal}` leaked: {said}");
    }
}
