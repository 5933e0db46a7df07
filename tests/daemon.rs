//! `steward run`: one pass, the status server, shutdown, broken manifests and replicas.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::fleet::{SHA1, World};
use common::{assert_exit, stderr, stdout};
use sqlx::Row;

fn run_command(world: &World, args: &[&str]) -> Command {
    let mut command = world.command(args);
    command.env_remove("RUST_LOG");
    command
}

async fn completed_applies(world: &World) -> i64 {
    let mut conn = world.db.connect().await;
    sqlx::query(
        "select count(*) as n from steward_events where step = 'apply' and outcome = 'completed'",
    )
    .fetch_one(&mut conn)
    .await
    .map(|r| r.get::<i64, _>("n"))
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_converges_the_fleet_and_a_second_finds_nothing_to_do() {
    let world = World::new().await;
    assert_eq!(world.steward(&["adopt", "shop"]).status.code(), Some(0));
    let first = world.steward(&["run", "--once"]);
    world.assert_no_secret(&first);
    assert_exit(&first, 0);
    assert!(stdout(&first).contains("Converged"), "{}", stdout(&first));
    assert!(
        stderr(&first).contains("✓ promote"),
        "progress is shown: {}",
        stderr(&first)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    let second = world.steward(&["run", "--once"]);
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(
        completed_applies(&world).await,
        1,
        "nothing was applied twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_manifest_is_reported_and_the_other_clients_go_on() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    std::fs::write(
        world.path().join("clients/broken.yaml"),
        "apiVersion: steward/v1\nkind: Client\nmetadata: {name: broken}\nspec:\n  code: {projcet: x}\n",
    )
    .expect("write");
    let out = world.steward(&["run", "--once"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the broken manifest makes the pass exit 1"
    );
    assert!(
        stderr(&out).contains("broken.yaml:5:10")
            && stderr(&out).contains("did you mean `project`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "shop still converged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_fleet_converge_each_client_exactly_once() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    let spawn = || {
        run_command(&world, &["run", "--once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    // One applies; the other waits on the lock, re-plans under it, and finds nothing to do
    // (or, if it timed out waiting, refuses). Never both.
    assert!(a.status.code().is_some() && b.status.code().is_some());
    assert_eq!(
        completed_applies(&world).await,
        1,
        "{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_server_serves_health_readiness_status_and_prometheus_metrics_then_stops_on_sigterm()
 {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = run_command(&world, &["run", "--listen", &addr, "--interval", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "readyz never became ready");
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    let status: serde_json::Value = http
        .get(format!("http://{addr}/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["clients"]["shop"]["phase"], "Converged", "{status}");
    let page = http
        .get(format!("http://{addr}/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("data-page=\"fleet\""),
        "the dashboard: {page}"
    );
    let fleet: serde_json::Value = http
        .get(format!("http://{addr}/api/fleet"))
        .send()
        .await
        .expect("fleet")
        .json()
        .await
        .expect("json");
    assert_eq!(fleet["clients"][0]["name"], "shop", "{fleet}");
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value: {line}");
        assert!(series.starts_with("steward_"), "bad series: {line}");
    }
    assert!(
        metrics.contains("steward_steps_total{kind=\"promote\",outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("steward_clients{phase=\"Converged\"} 1"),
        "{metrics}"
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = child.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = exited.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the daemon did not exit within 10 s of SIGTERM")
    });
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");
}

/// The daemon's view of one client, from its status server.
async fn client_status(http: &reqwest::Client, addr: &str) -> Option<serde_json::Value> {
    let status: serde_json::Value = http
        .get(format!("http://{addr}/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(status["clients"]["shop"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_short_by_a_transient_fault_is_retried_before_the_next_pass_and_status_says_when()
{
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    // Vercel answers the build's calls with 500 three times: one attempt per call, the
    // step tried three times, so the run stops Interrupted (nothing undone) and the
    // fault is over by the daemon's retry.
    world.emulator.update_faults(|f| {
        f.errors = 3;
        f.error_path = "/v13/deployments".into();
    });
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    // The next regular pass is an hour away: only the retry can converge the client.
    let mut child = run_command(
        &world,
        &[
            "--vercel-max-attempts",
            "1",
            "run",
            "--listen",
            &addr,
            "--interval",
            "1h",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn");
    let http = reqwest::Client::new();
    let mut retrying = None;
    let mut converged = false;
    for _ in 0..900 {
        if let Some(shop) = client_status(&http, &addr).await {
            let reason = shop["reason"].as_str().unwrap_or_default().to_owned();
            if reason.starts_with("retrying in ") && retrying.is_none() {
                assert!(shop["next_retry"].is_string(), "status says when: {shop}");
                retrying = Some(reason);
            }
            if shop["phase"] == "Converged" {
                converged = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let retrying = retrying.expect("status showed the retry");
    assert!(
        retrying.contains("after: transient:") && retrying.contains("deploy"),
        "{retrying}"
    );
    assert!(
        converged,
        "the retry converged the client before the next pass"
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    let mut conn = world.db.connect().await;
    let interrupted: i64 = sqlx::query_scalar(
        "select count(*) from steward_events where step = 'deploy' and outcome = 'interrupted'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("read steward_events");
    assert_eq!(
        interrupted, 1,
        "one run was interrupted, then one completed"
    );
    assert_eq!(completed_applies(&world).await, 1);
}
