//! Progressive rollouts judged on live traffic: a real Postgres, the Vercel emulator's
//! rolling releases and runtime logs over HTTP, and the `steward` binary as a process.
//! Stages last seconds; the emulator's synthetic traffic sets each sha's volume and 5xx
//! rate.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fleet::{SHA1, SHA2, World};
use common::hooks::Receiver;
use common::process::{free_addr, terminate};
use common::{assert_exit, stdout};
use steward::emulator::vercel::Traffic;

/// `policy.rollout` with two judged stages of 2 s, as extra lines of the client's policy.
fn rollout_policy(on_low_traffic: &str) -> String {
    format!(
        "    rollout:\n      stages: [{{percent: 10, for: 2s}}, {{percent: 50, for: 2s}}, {{percent: 100}}]\n      analysis: {{maxErrorRate: \"1%\", minRequests: 10, health: true, onInsufficientTraffic: {on_low_traffic}}}\n"
    )
}

/// Adopt and converge at SHA1 (nothing serves production yet, so that first release is
/// promote + bake), then ask for SHA2 under the rollout policy.
async fn world_releasing_sha2(on_low_traffic: &str) -> World {
    let world = World::new().await;
    world.write_client(
        SHA1,
        "2024_11_18_001",
        "info",
        &rollout_policy(on_low_traffic),
    );
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    world.write_client(
        SHA2,
        "2024_12_18_001",
        "debug",
        &rollout_policy(on_low_traffic),
    );
    world
}

fn traffic(requests_per_second: f64, error_rate: f64) -> Traffic {
    Traffic {
        requests_per_second,
        error_rate,
    }
}

/// The project's latest rolling release: its state and the canary's sha.
fn release(world: &World) -> Option<(String, String)> {
    world.emulator.with_state(|s| {
        let p = s.projects.values().find(|p| p.name == "shop-web")?;
        let r = serde_json::to_value(p.rolling_release.as_ref()?).ok()?;
        let canary = r["canary"].as_str()?;
        Some((
            r["state"].as_str()?.to_owned(),
            s.deployments.get(canary)?.sha.clone(),
        ))
    })
}

/// The recorded stage verdicts of the newest `rollout` event with this outcome.
async fn recorded_stages(world: &World, outcome: &str) -> Vec<serde_json::Value> {
    let mut conn = world.db.connect().await;
    let detail: Option<String> = sqlx::query_scalar(
        "select detail from steward_events where step = 'rollout' and outcome = $1 order by id desc limit 1",
    )
    .bind(outcome)
    .fetch_optional(&mut conn)
    .await
    .expect("query")
    .flatten();
    let detail: serde_json::Value =
        serde_json::from_str(&detail.unwrap_or_default()).unwrap_or_default();
    detail["stages"].as_array().cloned().unwrap_or_default()
}

async fn applied_version(world: &World) -> Option<String> {
    let mut conn = world.db.connect().await;
    sqlx::query_scalar(
        "select max(version) from (select distinct on (version) version, status from system_versions order by version, applied_at desc) v where status = 'applied'",
    )
    .fetch_optional(&mut conn)
    .await
    .expect("query")
}

async fn steps_run(world: &World) -> Vec<String> {
    let mut conn = world.db.connect().await;
    sqlx::query_scalar("select step from steward_events where outcome = 'succeeded' order by id")
        .fetch_all(&mut conn)
        .await
        .expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_serving_20_percent_errors_is_aborted_at_the_first_stage_with_the_schema_kept_recorded_and_notified()
 {
    let world = world_releasing_sha2("hold").await;
    world.emulator.set_traffic("*", traffic(100.0, 0.0));
    world.emulator.set_traffic(SHA2, traffic(100.0, 0.2));
    let hook = Receiver::start(0).await;
    world.write_fleet(
        &common::repo_root().join("migrations"),
        "  notify:\n    webhooks: [{url: {env: TEST_HOOK_URL}}]\n",
    );

    let out = world
        .command(&["apply", "shop", "--yes"])
        .env("TEST_HOOK_URL", &hook.url)
        .output()
        .expect("run steward");
    world.assert_no_secret(&out);
    assert_exit(&out, 1);
    let told: Vec<String> = hook
        .received()
        .iter()
        .filter(|m| m["steward"]["client"] == "shop")
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .filter(|t| t.contains("rollout aborted") && t.contains("stage 1 (10%)"))
        .collect();
    assert!(
        !told.is_empty(),
        "the abort is notified with its figures: {:?}",
        hook.received()
    );
    assert!(
        stdout(&out).contains("FAILED at rollout") && stdout(&out).contains("aborted"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "production is back on the previous deployment"
    );
    assert_eq!(
        release(&world),
        Some(("ABORTED".to_owned(), SHA2.to_owned()))
    );
    assert_eq!(
        applied_version(&world).await.as_deref(),
        Some("2024_12_18_001"),
        "the canary served traffic, so the schema is kept as after a failed bake"
    );
    let stages = recorded_stages(&world, "failed").await;
    assert_eq!(
        stages.len(),
        1,
        "judged at the first stage only: {stages:?}"
    );
    let first = &stages[0];
    assert_eq!(first["percent"], 10);
    assert_eq!(first["verdict"], "error_rate");
    let (requests, errors) = (
        first["requests"].as_u64().expect("requests"),
        first["errors"].as_u64().expect("errors"),
    );
    // One request in five fails; the stage's window need not start on one of them.
    let rate = errors as f64 / requests as f64;
    assert!(requests >= 10 && (0.1..=0.3).contains(&rate), "{first}");
    assert_eq!(first["baseline_rate"], 0.0, "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_release_walks_every_stage_to_100_percent() {
    let world = world_releasing_sha2("hold").await;
    world.emulator.set_traffic("*", traffic(100.0, 0.0));

    let out = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&out);
    assert_exit(&out, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    assert_eq!(
        release(&world),
        Some(("COMPLETE".to_owned(), SHA2.to_owned()))
    );
    let stages = recorded_stages(&world, "succeeded").await;
    let walked: Vec<(u64, &str)> = stages
        .iter()
        .map(|s| {
            (
                s["percent"].as_u64().unwrap_or_default(),
                s["verdict"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(walked, vec![(10, "healthy"), (50, "healthy")]);
    assert!(
        stages.iter().all(|s| s["requests"].as_u64() >= Some(10)),
        "{stages:?}"
    );
    let steps = steps_run(&world).await;
    let last_run = &steps[steps.iter().rposition(|s| s == "deploy").expect("deploy")..];
    assert!(
        last_run.contains(&"rollout".to_owned()) && !last_run.contains(&"bake".to_owned()),
        "the rollout replaced promote + bake: {last_run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_without_rolling_releases_promotes_and_bakes_as_before_and_the_plan_says_so() {
    let world = world_releasing_sha2("hold").await;
    world
        .emulator
        .set_rolling_releases_available("shop-web", false);

    let plan = world.steward(&["plan", "shop"]);
    assert!(
        stdout(&plan).contains("rolling releases are unavailable")
            && stdout(&plan).contains("promote + bake runs instead")
            && !stdout(&plan).contains("rollout:"),
        "{}",
        stdout(&plan)
    );
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    let steps = steps_run(&world).await;
    let last_run = &steps[steps.iter().rposition(|s| s == "deploy").expect("deploy")..];
    assert!(
        last_run.contains(&"promote".to_owned())
            && last_run.contains(&"bake".to_owned())
            && !last_run.contains(&"rollout".to_owned()),
        "{last_run:?}"
    );
    assert_eq!(release(&world), None, "no rolling release was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_with_too_little_traffic_holds_with_production_back_on_the_previous_deployment() {
    let world = world_releasing_sha2("hold").await;
    world.emulator.set_traffic("*", traffic(1.0, 0.0));

    let out = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&out);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("held"), "{}", stdout(&out));
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    assert_eq!(
        release(&world),
        Some(("ABORTED".to_owned(), SHA2.to_owned()))
    );
    let stages = recorded_stages(&world, "failed").await;
    assert_eq!(stages.len(), 1, "{stages:?}");
    assert_eq!(stages[0]["verdict"], "held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_with_too_little_traffic_proceeds_when_the_policy_says_proceed() {
    let world = world_releasing_sha2("proceed").await;
    world.emulator.set_traffic("*", traffic(1.0, 0.0));

    let out = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&out);
    assert_exit(&out, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    let stages = recorded_stages(&world, "succeeded").await;
    assert!(
        stages
            .iter()
            .all(|s| s["verdict"] == "proceeded_on_low_traffic"),
        "{stages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_shows_the_rollout_stages_in_text_markdown_and_json() {
    let world = world_releasing_sha2("hold").await;
    let stages = "rollout: 10% for 2s → 50% for 2s → 100%";

    let text = world.steward(&["plan", "shop"]);
    assert!(stdout(&text).contains(stages), "{}", stdout(&text));
    assert!(!stdout(&text).contains("promote:"), "{}", stdout(&text));

    // Markdown escapes its punctuation so a PR comment cannot be turned into markup.
    let markdown = world.steward(&["plan", "shop", "--format", "markdown"]);
    assert!(
        stdout(&markdown).contains(r"rollout\: 10\% for 2s → 50\% for 2s → 100\%"),
        "{}",
        stdout(&markdown)
    );

    let json = world.steward(&["plan", "shop", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("plan json");
    let step = json["clients"][0]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| &s["step"])
        .find(|s| s["kind"] == "rollout")
        .cloned()
        .expect("a rollout step in the JSON plan");
    let percents: Vec<u64> = step["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["percent"].as_u64())
        .collect();
    assert_eq!(percents, vec![10, 50, 100]);
    assert_eq!(step["analysis"]["min_requests"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rollout_policy_is_refused_naming_the_file_line_and_field() {
    let world = World::new().await;
    world.write_client(
        SHA1,
        "2024_11_18_001",
        "info",
        "    rollout:\n      stages: [{percent: 50, for: 1m}, {percent: 10}, {percent: 90}]\n      analysis: {maxErrorRate: lots}\n",
    );
    let out = world.steward(&["validate"]);
    assert_exit(&out, 1);
    let text = format!("{}{}", stdout(&out), common::stderr(&out));
    for expected in [
        "spec.policy.rollout.stages.1.percent",
        "stages must rise: 10% follows 50%",
        "the 10% stage needs `for:`",
        "the last stage must be 100% (all traffic), not 90%",
        "spec.policy.rollout.analysis.maxErrorRate",
        "`lots` is not a rate",
        "clients/shop.yaml:18:50: error: spec.policy.rollout.stages.1.percent",
        "clients/shop.yaml:19:32: error: spec.policy.rollout.analysis.maxErrorRate",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
}

/// `GET http://ADDR/PATH` as text, if the daemon answers.
async fn get(addr: &str, path: &str) -> Option<String> {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_shows_the_live_stage_and_percent_in_status_and_metrics_while_a_rollout_runs() {
    let world = World::new().await;
    let policy = "    rollout:\n      stages: [{percent: 10, for: 6s}, {percent: 100}]\n      analysis: {minRequests: 5}\n";
    world.write_client(SHA1, "2024_11_18_001", "info", policy);
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.write_client(SHA2, "2024_11_18_001", "info", policy);
    world.emulator.set_traffic("*", traffic(100.0, 0.0));
    let addr = free_addr();
    let daemon = world
        .command(&["run", "--listen", &addr, "--interval", "600s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");

    let started = Instant::now();
    let (status, metrics) = loop {
        let status: Option<serde_json::Value> = get(&addr, "/status")
            .await
            .and_then(|t| serde_json::from_str(&t).ok());
        let rollout = status
            .as_ref()
            .map(|s| s["clients"]["shop"]["rollout"].clone())
            .filter(|r| r["percent"] == 10 && r["error_rate"].is_number());
        if let Some(rollout) = rollout {
            break (rollout, get(&addr, "/metrics").await.unwrap_or_default());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no live rollout in /status: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["stage"], 1);
    assert_eq!(status["stages"], 2);
    // `steward status` at a terminal reads the same live stage from Vercel.
    let cli = world.steward(&["status", "shop"]);
    assert!(
        stdout(&cli).contains("rollout stage 1/2: 10% of traffic on the new deployment"),
        "{}",
        stdout(&cli)
    );
    let json = world.steward(&["status", "shop", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("status JSON");
    assert_eq!(json["clients"][0]["rollout"]["percent"], 10, "{json}");
    assert!(
        metrics.contains("steward_rollout_canary_percent{client=\"shop\"} 10")
            && metrics.contains("steward_rollout_stage{client=\"shop\"} 1")
            && metrics.contains("steward_rollout_canary_error_rate{client=\"shop\"} 0"),
        "{metrics}"
    );
    // Once the rollout completes, the live figures go away with it.
    while world.production_sha().as_deref() != Some(SHA2) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "never completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ended = false;
    while !ended && started.elapsed() < Duration::from_secs(90) {
        let status = get(&addr, "/status").await.unwrap_or_default();
        let metrics = get(&addr, "/metrics").await.unwrap_or_default();
        ended = !status.contains("\"rollout\"") && !metrics.contains("steward_rollout_stage{");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ended,
        "the rollout's live figures stayed after it completed"
    );
    terminate(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_killed_mid_stage_is_never_reported_converged_and_the_next_run_starts_it_again() {
    let world = World::new().await;
    let policy = "    rollout:\n      stages: [{percent: 10, for: 20s}, {percent: 100}]\n      analysis: {minRequests: 5}\n";
    world.write_client(SHA1, "2024_11_18_001", "info", policy);
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.emulator.set_traffic("*", traffic(100.0, 0.0));
    world.write_client(SHA2, "2024_11_18_001", "info", policy);
    let mut child = world
        .command(&["apply", "shop", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start steward");
    let started = Instant::now();
    while release(&world).map(|(state, _)| state).as_deref() != Some("ACTIVE") {
        assert!(
            child.try_wait().expect("child").is_none(),
            "ended before its rollout"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the rollout never began"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));

    // The canary still has its 10%: the client is not converged, and the plan says why.
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        stdout(&plan).contains("rollout:") && stdout(&plan).contains("interrupted"),
        "{}",
        stdout(&plan)
    );
    world.write_client(
        SHA2,
        "2024_11_18_001",
        "info",
        "    rollout:\n      stages: [{percent: 10, for: 1s}, {percent: 100}]\n      analysis: {minRequests: 5}\n",
    );
    let again = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&again, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    assert_eq!(
        release(&world),
        Some(("COMPLETE".to_owned(), SHA2.to_owned()))
    );
    // The next run reuses the READY build of the same commit: the stale release is
    // aborted and the rollout starts again from its first stage.
    let builds = world
        .emulator
        .with_state(|s| s.deployments.values().filter(|d| d.sha == SHA2).count());
    assert_eq!(builds, 1, "the killed run's build was rolled out again");
}
