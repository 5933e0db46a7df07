//! The status server under a flood of idle connections: it cannot take the daemon's file
//! descriptors, so a rollout running meanwhile is judged by the deployment alone.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::assert_exit;
use common::fleet::{SHA1, SHA2, World};
use common::process::{free_addr, terminate};
use sqlx::Row;

/// The daemon with at most `fds` file descriptors, as a container with a low
/// `ulimit -n` would run it.
fn daemon_with_fd_limit(world: &World, fds: u32, args: &[&str]) -> Command {
    let template = world.command(args);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
        .arg(template.get_program())
        .args(template.get_args());
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    command
}

async fn count_events(world: &World, outcome: &str) -> i64 {
    let mut conn = world.db.connect().await;
    sqlx::query("select count(*) as n from steward_events where outcome = $1")
        .bind(outcome)
        .fetch_one(&mut conn)
        .await
        .map(|r| r.get::<i64, _>("n"))
        .unwrap_or(0)
}

/// Whether the server closed this connection (end of stream, or reset).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(5)));
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => !matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_during_a_rollout_leaves_it_converged_and_healthz_answering() {
    let world = World::new().await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    assert_exit(&world.steward(&["apply", "shop", "--yes"]), 0);
    let addr = free_addr();
    let daemon = daemon_with_fd_limit(
        &world,
        256,
        &[
            "run",
            "--listen",
            &addr,
            "--interval",
            "1s",
            "--status-header-timeout",
            "2s",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("daemon");
    common::process::first_pass_done(&addr).await;

    // More idle connections than the daemon has file descriptors.
    let mut flood: Vec<TcpStream> = Vec::new();
    for _ in 0..600 {
        match TcpStream::connect(&addr) {
            Ok(stream) => flood.push(stream),
            Err(err) => panic!("the kernel refused connection {}: {err}", flood.len() + 1),
        }
    }

    world.write_client(SHA2, "2024_11_18_001", "info", "");
    let mut converged = false;
    for _ in 0..1200 {
        assert_eq!(
            count_events(&world, "rolled_back").await,
            0,
            "the rollout was undone: a local failure was judged as an unhealthy release"
        );
        if world.production_sha().as_deref() == Some(SHA2)
            && count_events(&world, "completed").await >= 2
        {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(converged, "within 120 s the rollout to SHA2 completed");
    assert_ne!(world.production_sha().as_deref(), Some(SHA1));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut healthz = None;
    for _ in 0..60 {
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            healthz = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        healthz.map(|s| s.as_u16()),
        Some(200),
        "/healthz answers while the flood lasts"
    );
    let mut open = flood.len();
    for _ in 0..600 {
        open = flood
            .iter_mut()
            .map(closed_by_server)
            .filter(|closed| !closed)
            .count();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        open, 0,
        "the server closed every idle connection after its header timeout"
    );
    assert_eq!(terminate(daemon).await.code(), Some(0));
}
