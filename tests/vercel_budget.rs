//! Vercel calls under rate limits: each call's budget of attempts and waiting, and the
//! process-wide limiter that paces a whole fleet's requests to the emulator's windows.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::fleet::{SHA1, TOKEN, World};
use common::process::{free_addr, terminate};
use common::{assert_exit, stdout};
use steward::emulator::vercel::limits::Limit;
use steward::emulator::vercel::{EmulatorConfig, RunningEmulator};
use steward::secret::Secret;
use steward::vercel::{self, Budget, VercelClient, VercelError};
use tokio::sync::Semaphore;

fn client(emulator: &RunningEmulator, budget: Budget) -> VercelClient {
    VercelClient::new(&emulator.base_url, Secret::new(TOKEN), None)
        .expect("client")
        .with_budget(budget)
}

fn one_limit(endpoint: &str, limit: u32, window_secs: u64) -> BTreeMap<String, Option<Limit>> {
    BTreeMap::from([(endpoint.to_owned(), Some(Limit { limit, window_secs }))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_against_endless_429s_fails_after_its_attempts_naming_the_limit_and_its_reset() {
    let world = World::new().await;
    world.emulator.update_faults(|f| {
        f.rate_limit = u32::MAX;
        f.retry_after_secs = 1;
    });
    world.emulator.reset_stats();
    let budget = Budget {
        attempts: 3,
        max_wait: Duration::from_secs(60),
    };
    let err = vercel::observe(&client(&world.emulator, budget), "shop-web")
        .await
        .expect_err("429 forever cannot succeed");
    assert!(
        matches!(err, VercelError::RateLimited { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        world.emulator.requests(),
        3,
        "three attempts reached Vercel, no more"
    );
    let message = err.to_string();
    for part in [
        "GET /v9/projects/{id}",
        "100 requests per window",
        "resets at",
        "3 attempt(s)",
        "--vercel-max-wait",
    ] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_the_wait_budget_is_not_waited_out() {
    let world = World::new().await;
    world.emulator.update_faults(|f| {
        f.rate_limit = u32::MAX;
        f.retry_after_secs = 3600;
    });
    world.emulator.reset_stats();
    let budget = Budget {
        attempts: 4,
        max_wait: Duration::from_secs(5),
    };
    let err = vercel::observe(&client(&world.emulator, budget), "shop-web")
        .await
        .expect_err("the window resets long after the budget");
    let VercelError::RateLimited { resets_at, .. } = &err else {
        panic!("expected RateLimited, got {err:?}");
    };
    assert!(
        *resets_at > SystemTime::now() + Duration::from_secs(3000),
        "the reset Vercel announced is reported: {err}"
    );
    assert_eq!(
        world.emulator.requests(),
        1,
        "one 429, then no request is sent into a window known to be spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_over_1000_clients_is_paced_to_the_emulators_limit_without_a_single_429() {
    let emulator = RunningEmulator::start(EmulatorConfig::new(TOKEN))
        .await
        .expect("emulator");
    let names: Vec<String> = (0..1000).map(|i| format!("c{i:04}-web")).collect();
    for name in &names {
        emulator.create_project(name, None);
    }
    emulator
        .set_rate_limits(one_limit("projects.get", 100, 2))
        .expect("a known endpoint");
    // The daemon's shape: 16 reconciles at once; each client has a VercelClient of its
    // own, so only the process-wide limiter can pace them together.
    let concurrency = Arc::new(Semaphore::new(16));
    let clients: Vec<VercelClient> = names
        .iter()
        .map(|_| client(&emulator, Budget::default()))
        .collect();
    let observations = names.iter().cloned().zip(clients).map(|(name, client)| {
        let concurrency = concurrency.clone();
        tokio::spawn(async move {
            let _slot = concurrency.acquire_owned().await.expect("semaphore");
            vercel::observe(&client, &name)
                .await
                .map(|o| o.project.name)
        })
    });
    let results = futures::future::join_all(observations).await;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| match r.expect("task") {
            Ok(_) => None,
            Err(err) => Some(err.to_string()),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    let statuses = emulator.with_state(|s| s.stats.by_status.clone());
    assert_eq!(statuses.get(&429), None, "no 429 was served: {statuses:?}");
    let stats = &emulator.rate_limit_stats()["projects.get"];
    assert_eq!(stats.allowed, 1000);
    assert!(
        stats.windows_filled >= 1,
        "the limit was binding: windows were spent to the last request, without a 429: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_on_the_rate_limit_shows_so_in_status_and_metrics_never_as_converged() {
    let world = World::new().await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    assert_exit(&world.steward(&["apply", "shop", "--yes"]), 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    // One project read an hour, already spent: every look at the project waits on Vercel.
    world
        .emulator
        .set_rate_limits(one_limit("projects.get", 1, 3600))
        .expect("a known endpoint");
    vercel::observe(&client(&world.emulator, Budget::default()), "shop-web")
        .await
        .expect("the window's one request");

    let once = world
        .command(&["run", "--once"])
        .env("STEWARD_VERCEL_MAX_WAIT", "2s")
        .output()
        .expect("run");
    assert_exit(&once, 2);
    assert!(
        stdout(&once).contains("RateLimited") && stdout(&once).contains("GET /v9/projects/{id}"),
        "{}",
        stdout(&once)
    );

    let status = world
        .command(&["status", "shop", "--format", "json"])
        .env("STEWARD_VERCEL_MAX_WAIT", "2s")
        .output()
        .expect("status");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(json["clients"][0]["phase"], "RateLimited", "{json}");

    let addr = free_addr();
    let daemon = world
        .command(&["run", "--listen", &addr, "--interval", "1s"])
        .env("STEWARD_VERCEL_MAX_WAIT", "2s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let mut seen = None;
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(format!("http://{addr}/metrics")).await
            && let Ok(text) = r.text().await
            && text.contains("steward_clients{phase=\"RateLimited\"} 1")
        {
            seen = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = seen.expect("within 30 s the metrics count the client as RateLimited");
    assert!(
        !metrics.contains("steward_clients{phase=\"Converged\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("steward_vercel_rate_limit_exhausted_total")
            && !metrics.contains("steward_vercel_rate_limit_exhausted_total 0"),
        "{metrics}"
    );
    let json: serde_json::Value = reqwest::get(format!("http://{addr}/status"))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(json["clients"]["shop"]["phase"], "RateLimited", "{json}");
    assert_eq!(terminate(daemon).await.code(), Some(0));
}
