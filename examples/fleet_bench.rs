//! The daemon at fleet scale: N clients (default 1,000), each a real database on the local
//! Postgres plus a project on the in-process Vercel emulator, converged by the real
//! `steward run --once` process. Reports
//!   (a) a steady-state pass over the converged fleet by the long-running daemon: wall time
//!       and Vercel requests per client (target: under 2 s with 0 ms emulator latency);
//!       beside it, a full resync (every database looked at live, `run --once`) and its
//!       floor, a fresh connection + `SELECT 1` to every database;
//!   (b) a fleet-wide schema + code change: time to converge with concurrency 16;
//!   (c) the daemon's peak memory (VmHWM of the process; target under 150 MiB).
//!
//! Run: `cargo build --release && cargo run --release --example fleet_bench [-- CLIENTS]`.
//! Needs a local Postgres (`STEWARD_BENCH_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) that allows `max_connections` ≥ 40.
//! It creates `steward_bench_<pid>_<n>` databases and drops them at the end.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{admin_url, steward_binary};

use sqlx::{Connection, Executor, PgConnection};
use steward::emulator::vercel::{EmulatorConfig, RunningEmulator};
use tokio::sync::Semaphore;

const TOKEN: &str = "fleet-bench-token";
const SHA1: &str = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2";
const SHA2: &str = "f6e5d4c3b2a1f6e5d4c3b2a1f6e5d4c3b2a1f6e5";
const CONCURRENCY: usize = 16;

fn database_url(admin: &str, name: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

fn client_name(i: usize) -> String {
    format!("c{i:04}")
}

fn write_fleet(dir: &Path, emulator: &RunningEmulator) {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    std::fs::create_dir_all(dir.join("clients")).expect("mkdir");
    std::fs::write(
        dir.join("fleet.yaml"),
        format!(
            "apiVersion: steward/v1\nkind: Fleet\nspec:\n  migrations: {}\n  backups: {{dir: backups}}\n  vercel:\n    apiUrl: {}\n    token: {{env: BENCH_VERCEL_TOKEN}}\n    connectTo: [{{host: \"*.vercel.app\", to: \"{}\", scheme: http}}]\n  fingerprintKey: {{env: BENCH_FINGERPRINT_KEY}}\n  defaults:\n    env: {{LOG_LEVEL: info}}\n    policy: {{apply: auto, bake: 200ms, health: {{path: /api/health, timeout: 2s}}}}\n",
            migrations.display(),
            emulator.base_url,
            emulator.authority()
        ),
    )
    .expect("write fleet");
}

fn write_clients(dir: &Path, clients: usize, sha: &str, schema: &str) {
    for i in 0..clients {
        let name = client_name(i);
        std::fs::write(
            dir.join(format!("clients/{name}.yaml")),
            format!(
                "apiVersion: steward/v1\nkind: Client\nmetadata: {{name: {name}}}\nspec:\n  code: {{project: {name}-web, version: {sha}}}\n  database:\n    url: {{env: BENCH_DB_{i:04}}}\n    schemaVersion: {schema}\n"
            ),
        )
        .expect("write client");
    }
}

/// The daemon's peak resident memory, sampled from /proc while it runs (VmHWM only grows).
fn watch_peak(pid: u32) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak_kb = 0.0f64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
            if status.contains("State:\tZ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak_kb / 1024.0
    })
}

struct Pass {
    wall: Duration,
    requests: u64,
    peak_mib: f64,
    exit: Option<i32>,
}

/// `steward run` on the bench fleet, with every client's database URL in its environment.
fn steward_run(binary: &Path, dir: &Path, urls: &[String], args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["run", "--concurrency", &CONCURRENCY.to_string()])
        .args(args)
        .arg("--fleet")
        .arg(dir)
        .env("BENCH_VERCEL_TOKEN", TOKEN)
        .env("BENCH_FINGERPRINT_KEY", "fleet-bench-fingerprint-key")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (i, url) in urls.iter().enumerate() {
        command.env(format!("BENCH_DB_{i:04}"), url);
    }
    command
}

fn run_once(binary: &Path, dir: &Path, urls: &[String], emulator: &RunningEmulator) -> Pass {
    let before = emulator.with_state(|s| s.stats.requests);
    let mut command = steward_run(binary, dir, urls, &["--once"]);
    let started = Instant::now();
    let child = command.spawn().expect("spawn steward");
    let peak = watch_peak(child.id());
    let output = child.wait_with_output().expect("wait");
    let wall = started.elapsed();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        eprintln!("steward run exited {:?}; last lines:", output.status.code());
        for line in tail.into_iter().rev() {
            eprintln!("  {line}");
        }
    }
    Pass {
        wall,
        requests: emulator.with_state(|s| s.stats.requests) - before,
        peak_mib: peak.join().unwrap_or(0.0),
        exit: output.status.code(),
    }
}

/// One value from the daemon's /metrics, once it answers.
async fn metric(addr: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

async fn wait_for_pass(addr: &str, passes: f64) -> f64 {
    loop {
        if let Some(done) = metric(addr, "steward_loops_total").await
            && done >= passes
        {
            return metric(addr, "steward_last_pass_seconds")
                .await
                .expect("steward_last_pass_seconds");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Passes of the long-running daemon, timed by the daemon itself (`steward_last_pass_seconds`).
struct DaemonPasses {
    /// Its first pass: a full resync, every database looked at live.
    full: f64,
    /// Later passes over the converged fleet: Vercel read, database looks reused.
    steady: Vec<f64>,
    requests_per_client: f64,
    peak_mib: f64,
}

async fn daemon_passes(
    binary: &Path,
    dir: &Path,
    urls: &[String],
    emulator: &RunningEmulator,
) -> DaemonPasses {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").to_string()
    };
    let mut child = steward_run(
        binary,
        dir,
        urls,
        &["--listen", &addr, "--interval", "1s", "--db-resync", "10m"],
    )
    .spawn()
    .expect("spawn steward run");
    let peak = watch_peak(child.id());
    let full = wait_for_pass(&addr, 1.0).await;
    let mut steady = Vec::new();
    let mut requests = 0;
    for pass in 2..=6 {
        let before = emulator.with_state(|s| s.stats.requests);
        steady.push(wait_for_pass(&addr, pass as f64).await);
        requests += emulator.with_state(|s| s.stats.requests) - before;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    DaemonPasses {
        full,
        requests_per_client: requests as f64 / steady.len() as f64 / urls.len() as f64,
        steady,
        peak_mib: peak.join().unwrap_or(0.0),
    }
}

async fn for_each_database(
    names: &[String],
    admin: &str,
    statement: impl Fn(&str) -> String + Send + Sync + 'static,
) {
    let semaphore = Arc::new(Semaphore::new(4));
    let statement = Arc::new(statement);
    let mut tasks = Vec::new();
    for name in names {
        let (semaphore, statement, admin, name) = (
            semaphore.clone(),
            statement.clone(),
            admin.to_owned(),
            name.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let mut conn = PgConnection::connect(&admin).await.expect("admin");
            let _ = conn.execute(sqlx::AssertSqlSafe(statement(&name))).await;
            let _ = conn.close().await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn connect_floor(urls: &[String]) -> Duration {
    let semaphore = Arc::new(Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for url in urls {
        let (semaphore, url) = (semaphore.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let mut conn = PgConnection::connect(&url).await.expect("connect");
            let _ = conn.execute("SELECT 1").await;
            let _ = conn.close().await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let clients: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let admin = admin_url();
    if let Err(err) = PgConnection::connect(&admin).await {
        eprintln!("no Postgres answers at {admin}: {err}");
        std::process::exit(2);
    }
    let binary = steward_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (0..clients)
        .map(|i| format!("steward_bench_{}_{i:04}", std::process::id()))
        .collect();
    let suffix = std::env::var("FLEET_BENCH_URL_SUFFIX").unwrap_or_default();
    let urls: Vec<String> = names
        .iter()
        .map(|n| format!("{}{suffix}", database_url(&admin, n)))
        .collect();

    println!("fleet_bench: {clients} clients, concurrency {CONCURRENCY}");
    let setup = Instant::now();
    for_each_database(&names, &admin, |n| format!("CREATE DATABASE \"{n}\"")).await;
    let mut config = EmulatorConfig::new(TOKEN);
    config.build_time = Duration::from_millis(50);
    let emulator = RunningEmulator::start(config).await.expect("emulator");
    // This measures steward, not Vercel's windows: lift the emulator's rate limits.
    emulator
        .set_rate_limits([("*".to_owned(), None)].into())
        .expect("every endpoint");
    for i in 0..clients {
        let project = format!("{}-web", client_name(i));
        emulator.create_project(&project, None);
        // Taken over, as a fleet steward promotes is.
        emulator.set_auto_assign(&project, false);
    }
    for (i, url) in urls.iter().enumerate() {
        let mut conn = PgConnection::connect(url).await.expect("client database");
        steward::postgres::adopt(&mut conn, &client_name(i), "fleet-bench")
            .await
            .expect("adopt");
        let _ = conn.close().await;
    }
    write_fleet(dir.path(), &emulator);
    write_clients(dir.path(), clients, SHA1, "2024_11_18_001");
    println!(
        "setup: {clients} databases created and adopted, {clients} projects ({:.1} s)",
        setup.elapsed().as_secs_f64()
    );

    let first = run_once(&binary, dir.path(), &urls, &emulator);
    println!(
        "initial convergence      {:>8.2} s   exit {:?}   peak {:>6.1} MiB",
        first.wall.as_secs_f64(),
        first.exit,
        first.peak_mib
    );

    // (a) The daemon as it runs in production: its steady passes over the converged fleet.
    let daemon = daemon_passes(&binary, dir.path(), &urls, &emulator).await;
    let mut steady = daemon.steady.clone();
    steady.sort_by(f64::total_cmp);
    println!(
        "(a) steady-state pass    {:>8.2} s   median of {} daemon passes (max {:.2} s)   {:.2} Vercel requests/client   peak {:>6.1} MiB   (target < 2 s)",
        steady[steady.len() / 2],
        steady.len(),
        steady[steady.len() - 1],
        daemon.requests_per_client,
        daemon.peak_mib
    );
    println!(
        "    the daemon's first pass, a full resync (every database live) {:>6.2} s",
        daemon.full
    );

    // A full resync as a process (`--once`: every database live, every time), and the floor
    // for that: one fresh connection + `SELECT 1` to every database, same concurrency. On
    // one small server, backend start-up dominates.
    let full = run_once(&binary, dir.path(), &urls, &emulator);
    let floor = connect_floor(&urls).await;
    println!(
        "    full resync, `run --once` {:>6.2} s   {:.2} Vercel requests/client   exit {:?}",
        full.wall.as_secs_f64(),
        full.requests as f64 / clients as f64,
        full.exit
    );
    println!(
        "    floor: connect + SELECT 1 to each database {:>6.2} s   full resync/floor {:.2}x",
        floor.as_secs_f64(),
        full.wall.as_secs_f64() / floor.as_secs_f64()
    );

    write_clients(dir.path(), clients, SHA2, "2024_12_02_001");
    let change = run_once(&binary, dir.path(), &urls, &emulator);
    let converged = emulator.with_state(|s| {
        s.projects
            .values()
            .filter(|p| {
                p.production
                    .as_ref()
                    .and_then(|id| s.deployments.get(id))
                    .is_some_and(|d| d.sha == SHA2)
            })
            .count()
    });
    println!(
        "(b) schema + code change {:>8.2} s   {converged}/{clients} on the new code   exit {:?}   peak {:>6.1} MiB",
        change.wall.as_secs_f64(),
        change.exit,
        change.peak_mib
    );
    let peak = first
        .peak_mib
        .max(daemon.peak_mib)
        .max(full.peak_mib)
        .max(change.peak_mib);
    println!("(c) peak daemon memory   {peak:>8.1} MiB   (target < 150 MiB)");

    if let Ok(secs) = std::env::var("FLEET_BENCH_HOLD_SECS") {
        // Keep everything up for profiling by hand.
        println!("holding {secs} s: fleet at {}", dir.path().display());
        for (i, url) in urls.iter().enumerate().take(3) {
            println!("  BENCH_DB_{i:04}={url}");
        }
        println!("  emulator at {}", emulator.base_url);
        tokio::time::sleep(Duration::from_secs(secs.parse().unwrap_or(600))).await;
    }
    emulator.shutdown();
    for_each_database(&names, &admin, |n| {
        format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)")
    })
    .await;
}
