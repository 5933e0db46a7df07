//! The Vercel side under faults, through the real client and the emulator over HTTP.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{SHA1, SHA2, World};
use common::{assert_exit, stdout};
use steward::secret::Secret;
use steward::vercel::{self, VercelClient, VercelError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_retried_after_retry_after_and_the_request_count_stays_bounded() {
    let world = World::new().await;
    world.emulator.update_faults(|f| {
        f.rate_limit = 3;
        f.retry_after_secs = 1;
    });
    world.emulator.reset_stats();
    let client = VercelClient::new(
        &world.emulator.base_url,
        Secret::new(common::fleet::TOKEN),
        None,
    )
    .expect("client");
    let started = Instant::now();
    let observed = vercel::observe(&client, "shop-web")
        .await
        .expect("succeeds after the storm");
    assert_eq!(observed.project.name, "shop-web");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "waited Retry-After each time: {:?}",
        started.elapsed()
    );
    assert_eq!(
        world.emulator.requests(),
        4,
        "three 429s and one success, nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_promote_is_retried_and_when_it_persists_production_is_unchanged() {
    let world = World::new().await;
    assert_eq!(world.steward(&["adopt", "shop"]).status.code(), Some(0));
    assert_eq!(
        world.steward(&["apply", "shop", "--yes"]).status.code(),
        Some(0)
    );
    // Two 500s: retried through.
    world.emulator.update_faults(|f| {
        f.errors = 2;
        f.error_path = "/promote/".to_owned();
    });
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    // A persistent 500: Vercel's fault, not the release's. A clear error, the run is
    // interrupted (exit 2) rather than failed, and production stays where it was.
    world.emulator.update_faults(|f| {
        f.errors = 1000;
        f.error_path = "/promote/".to_owned();
    });
    world.write_client(SHA1, "2024_11_18_001", "info", "");
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&out, 2);
    assert!(
        stdout(&out).contains("interrupted: transient:")
            && stdout(&out).contains("internal_server_error")
            && stdout(&out).contains("during promote"),
        "{}",
        stdout(&out)
    );
    world.emulator.update_faults(|f| f.errors = 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    // Not held as a failed release: the plan runs again without `steward retry`.
    let plan = world.steward(&["plan", "shop"]);
    assert_exit(&plan, 0);
    assert!(
        !stdout(&plan).contains("failed at") && !stdout(&plan).contains("steward retry"),
        "{}",
        stdout(&plan)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_fails_its_health_check_is_never_promoted() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.emulator.update_faults(|f| {
        f.unhealthy.insert(SHA2.to_owned(), 500);
    });
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("FAILED at health_check") && stdout(&out).contains("answered 500"),
        "{}",
        stdout(&out)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_project_and_a_bad_token_are_permanent_errors_naming_the_client() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    let text = std::fs::read_to_string(world.path().join("clients/shop.yaml")).expect("read");
    std::fs::write(
        world.path().join("clients/shop.yaml"),
        text.replace("project: shop-web", "project: nope-web"),
    )
    .expect("write");
    let out = world.steward(&["plan", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("shop")
            && stdout(&out).contains("not_found")
            && stdout(&out).contains("nope-web"),
        "{}",
        stdout(&out)
    );

    let client = VercelClient::new(&world.emulator.base_url, Secret::new("not-the-token"), None)
        .expect("client");
    world.emulator.reset_stats();
    let err = vercel::observe(&client, "shop-web")
        .await
        .expect_err("bad token");
    assert!(
        matches!(&err, VercelError::Api { status: 403, code, .. } if code == "forbidden"),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(world.emulator.requests(), 1, "a 403 is not retried");
    assert!(
        !format!("{err} {err:?} {client:?}").contains("not-the-token"),
        "the token never shows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_writes_are_all_or_nothing() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    // Three env changes; the second write fails for good.
    let extra = "";
    world.write_client(SHA1, "2024_11_18_001", "debug", extra);
    let text = std::fs::read_to_string(world.path().join("clients/shop.yaml")).expect("read");
    std::fs::write(
        world.path().join("clients/shop.yaml"),
        text.replace(
            "    LOG_LEVEL: debug\n",
            "    LOG_LEVEL: debug\n    FEATURE_A: \"on\"\n    FEATURE_B: \"on\"\n",
        ),
    )
    .expect("write");
    world.emulator.update_faults(|f| {
        f.env_writes_before_error = 1;
        f.env_write_errors = 1;
    });
    let faults = world
        .emulator
        .with_state(|s| (s.faults.env_write_errors, s.faults.env_writes_before_error));
    assert_eq!(faults, (1, 1));
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("FAILED at set_env"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        world.env("LOG_LEVEL").map(|(v, _)| v).as_deref(),
        Some("info"),
        "the write that succeeded was undone"
    );
    assert!(world.env("FEATURE_A").is_none() && world.env("FEATURE_B").is_none());
    let deployments = world.emulator.with_state(|s| s.deployments.len());
    assert_eq!(deployments, 1, "a half-synced env never reached a build");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_only_change_redeploys_the_production_build() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.write_client(SHA1, "2024_11_18_001", "debug", "");
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let sources: Vec<String> = world
        .emulator
        .with_state(|s| s.deployments.values().map(|d| d.source.clone()).collect());
    assert_eq!(
        sources.iter().filter(|s| *s == "redeploy").count(),
        1,
        "{sources:?}"
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_keeps_its_state_in_a_file_across_restarts() {
    use steward::emulator::vercel::{EmulatorConfig, RunningEmulator};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EmulatorConfig::new("t");
    config.state_file = Some(dir.path().join("state.json"));
    config.projects = vec!["kept-web".to_owned()];
    let first = RunningEmulator::start(config.clone()).await.expect("start");
    let client = VercelClient::new(&first.base_url, Secret::new("t"), None).expect("client");
    client
        .upsert_env("kept-web", "K", &Secret::new("v"), "encrypted", "c")
        .await
        .expect("env");
    first.shutdown();
    config.projects.clear();
    let second = RunningEmulator::start(config).await.expect("restart");
    let client = VercelClient::new(&second.base_url, Secret::new("t"), None).expect("client");
    let project = client.project("kept-web").await.expect("project survives");
    assert_eq!(
        project
            .env
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        ["K"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_deployments_follows_the_pagination_cursor_across_pages() {
    let world = World::new().await;
    let client = VercelClient::new(
        &world.emulator.base_url,
        Secret::new(common::fleet::TOKEN),
        None,
    )
    .expect("client");
    let project = client.project("shop-web").await.expect("project");
    for _ in 0..105 {
        client
            .create_deployment(&project, SHA1)
            .await
            .expect("create");
        tokio::time::sleep(Duration::from_millis(2)).await; // ms cursors need distinct times
    }
    let all = client
        .deployments_for_sha(&project.id, SHA1)
        .await
        .expect("list");
    assert_eq!(all.len(), 105);
    let mut ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 105, "no page repeated or skipped");
}
