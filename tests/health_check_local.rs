//! A health check that gets no answer for a local reason (here: the proxy `connectTo`
//! routes through is down) is retried, and never judged as an unhealthy release.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::assert_exit;
use common::fleet::{SHA2, World};
use common::process::free_addr;
use sqlx::Row;
use tokio::net::{TcpListener, TcpStream};

/// Route health checks through `proxy` instead of straight to the emulator.
fn route_health_through(world: &World, proxy: &str) {
    let path = world.path().join("fleet.yaml");
    let text = std::fs::read_to_string(&path).expect("fleet.yaml");
    let direct = format!("to: \"{}\"", world.emulator.authority());
    assert!(text.contains(&direct), "{text}");
    std::fs::write(&path, text.replace(&direct, &format!("to: \"{proxy}\""))).expect("write");
}

/// A TCP proxy on `listen` to `to`, started after `delay`.
fn proxy_after(delay: Duration, listen: String, to: SocketAddr) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let listener = TcpListener::bind(&listen).await.expect("proxy bind");
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

async fn apply(world: &World) -> std::process::Output {
    let mut command = world.command(&["apply", "shop", "--yes"]);
    tokio::task::spawn_blocking(move || command.output().expect("apply"))
        .await
        .expect("join")
}

async fn undone_steps(world: &World) -> i64 {
    let mut conn = world.db.connect().await;
    sqlx::query(
        "select count(*) as n from steward_events where outcome in ('undone', 'rolled_back')",
    )
    .fetch_one(&mut conn)
    .await
    .map(|r| r.get::<i64, _>("n"))
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_refused_by_our_own_proxy_is_retried_until_the_deployment_answers() {
    let world = World::new().await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    assert_exit(&world.steward(&["apply", "shop", "--yes"]), 0);
    let proxy = free_addr();
    route_health_through(&world, &proxy);
    proxy_after(Duration::from_secs(2), proxy, world.emulator.addr);
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    let out = apply(&world).await;
    assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("health check got no answer; retrying"),
        "the refused connections were retried: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    assert_eq!(undone_steps(&world).await, 0, "nothing was undone");
}

async fn failed_applies(world: &World) -> i64 {
    let mut conn = world.db.connect().await;
    sqlx::query(
        "select count(*) as n from steward_events where step = 'apply' and outcome in ('failed', 'rolled_back')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("events")
    .get("n")
}

async fn interruptions(world: &World) -> i64 {
    let mut conn = world.db.connect().await;
    sqlx::query(
        "select count(*) as n from steward_events where step = 'apply' and detail like 'interrupted: transient: %'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("events")
    .get("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_that_cannot_connect_interrupts_the_run_undoes_nothing_and_the_next_apply_converges()
 {
    let world = World::new().await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    assert_exit(&world.steward(&["apply", "shop", "--yes"]), 0);
    let before = world.production_sha();
    assert!(before.is_some(), "the first apply promoted a build");
    // Nothing listens on the route's port for the whole run.
    let proxy = free_addr();
    route_health_through(&world, &proxy);
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    let out = apply(&world).await;
    assert_exit(&out, 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("interrupted: transient: health check of") && text.contains("got no answer"),
        "the run says it was interrupted by a transient failure: {text}"
    );
    assert!(
        !text.contains("FAILED") && !text.contains("steward retry"),
        "the release is not judged: {text}"
    );
    assert_eq!(world.production_sha(), before, "production untouched");
    assert_eq!(undone_steps(&world).await, 0, "nothing was undone");
    assert_eq!(failed_applies(&world).await, 0, "the client is not Failed");
    assert_eq!(
        interruptions(&world).await,
        1,
        "the interruption is recorded"
    );

    // The port answers now: the next apply continues, without `steward retry`.
    proxy_after(Duration::ZERO, proxy, world.emulator.addr);
    let out = apply(&world).await;
    assert_exit(&out, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    assert_eq!(undone_steps(&world).await, 0, "nothing was undone");
}
