//! The status server under a flood: thousands of idle and slow connections on the status
//! port of a daemon limited to 1,024 file descriptors (a common container default), while
//! it rolls a client out against the in-process Vercel emulator and a real Postgres.
//! Prints the connections the flood held open over time, the rollout's outcome and time,
//! and how `/healthz` answered meanwhile.
//!
//! Run: `cargo run --release --example status_flood_bench [-- CONNECTIONS]` (default
//! 4,000: half send nothing, half trickle a request head one byte a second). Needs a
//! local Postgres (`STEWARD_BENCH_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`); creates and drops one database.

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{admin_url, steward_binary};

use sqlx::{Connection, Executor, PgConnection, Row};
use steward::emulator::vercel::{EmulatorConfig, RunningEmulator};

const TOKEN: &str = "flood-bench-token";
const SHA1: &str = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2";
const SHA2: &str = "f6e5d4c3b2a1f6e5d4c3b2a1f6e5d4c3b2a1f6e5";
const DAEMON_FDS: u32 = 1024;

fn write_fleet(dir: &Path, emulator: &RunningEmulator) {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    std::fs::create_dir_all(dir.join("clients")).expect("mkdir");
    std::fs::write(
        dir.join("fleet.yaml"),
        format!(
            "apiVersion: steward/v1\nkind: Fleet\nspec:\n  migrations: {}\n  backups: {{dir: backups}}\n  vercel:\n    apiUrl: {}\n    token: {{env: BENCH_VERCEL_TOKEN}}\n    connectTo: [{{host: \"*.vercel.app\", to: \"{}\", scheme: http}}]\n  fingerprintKey: {{env: BENCH_FINGERPRINT_KEY}}\n",
            migrations.display(),
            emulator.base_url,
            emulator.authority()
        ),
    )
    .expect("write fleet");
}

fn write_client(dir: &Path, sha: &str) {
    std::fs::write(
        dir.join("clients/shop.yaml"),
        format!(
            "apiVersion: steward/v1\nkind: Client\nmetadata: {{name: shop}}\nspec:\n  code: {{project: shop-web, version: {sha}}}\n  database:\n    url: {{env: BENCH_DB}}\n    schemaVersion: 2024_11_18_001\n  env: {{LOG_LEVEL: info}}\n  policy:\n    apply: auto\n    bake: 2s\n    health: {{path: /api/health, timeout: 2s}}\n"
        ),
    )
    .expect("write client");
}

/// `steward ARGS --fleet DIR` with the bench's secrets, under `ulimit -n fds`.
fn steward(binary: &Path, dir: &Path, db: &str, fds: u32, args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
        .arg(binary)
        .args(args)
        .arg("--fleet")
        .arg(dir)
        .env("BENCH_VERCEL_TOKEN", TOKEN)
        .env("BENCH_FINGERPRINT_KEY", "flood-bench-fingerprint-key")
        .env("BENCH_DB", db)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    command
}

fn run_checked(mut command: Command, what: &str) {
    let out = command.output().expect(what);
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Idle connections (nothing sent) and slow ones (a request head, one byte a second).
struct Flood {
    streams: Vec<TcpStream>,
    stop: Arc<AtomicBool>,
}

impl Flood {
    fn open(addr: &str, count: usize) -> Flood {
        let mut streams = Vec::with_capacity(count);
        for i in 0..count {
            match TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(2)) {
                Ok(stream) => streams.push(stream),
                Err(err) => {
                    println!("  the kernel stopped taking connections at {i}: {err}");
                    break;
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let slow: Vec<TcpStream> = streams
            .iter()
            .skip(streams.len() / 2)
            .filter_map(|s| s.try_clone().ok())
            .collect();
        let stopping = stop.clone();
        std::thread::spawn(move || {
            let head = b"GET /status HTTP/1.1\r\nHost: flood\r\nX-Slow: ";
            let mut slow = slow;
            for byte in head.iter().cycle() {
                if stopping.load(Ordering::Relaxed) || slow.is_empty() {
                    return;
                }
                slow.retain_mut(|s| s.write_all(&[*byte]).is_ok());
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Flood { streams, stop }
    }

    /// Connections the server has not closed yet.
    fn still_open(&self) -> usize {
        use std::io::Read;
        self.streams
            .iter()
            .filter(|s| {
                let mut s: &TcpStream = s;
                let _ = s.set_nonblocking(true);
                let mut buf = [0u8; 512];
                let open = loop {
                    match s.read(&mut buf) {
                        Ok(0) => break false,
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                        Err(_) => break false,
                    }
                };
                let _ = s.set_nonblocking(false);
                open
            })
            .count()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn production_sha(emulator: &RunningEmulator) -> Option<String> {
    emulator.with_state(|s| {
        let p = s.projects.values().find(|p| p.name == "shop-web")?;
        s.deployments
            .get(p.production.as_ref()?)
            .map(|d| d.sha.clone())
    })
}

async fn outcomes(db: &str) -> (i64, i64) {
    let Ok(mut conn) = PgConnection::connect(db).await else {
        return (0, 0);
    };
    let count = |outcome: &'static str| {
        sqlx::query(
            "select count(*) as n from steward_events where step = 'apply' and outcome = $1",
        )
        .bind(outcome)
    };
    let completed = count("completed")
        .fetch_one(&mut conn)
        .await
        .map_or(0, |r| r.get::<i64, _>("n"));
    let rolled_back = count("rolled_back")
        .fetch_one(&mut conn)
        .await
        .map_or(0, |r| r.get::<i64, _>("n"));
    let _ = conn.close().await;
    (completed, rolled_back)
}

fn terminate(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::main]
async fn main() {
    let connections: usize = std::env::args()
        .nth(1)
        .map_or(4000, |n| n.parse().expect("CONNECTIONS is a number"));
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let binary = steward_binary();
    let admin = admin_url();
    let name = format!("steward_bench_flood_{}", std::process::id());
    let mut conn = PgConnection::connect(&admin).await.expect("Postgres");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .expect("create database");
    let db = format!("{}/{name}", admin.rsplit_once('/').expect("URL").0);
    let emulator = RunningEmulator::start(EmulatorConfig::new(TOKEN))
        .await
        .expect("emulator");
    emulator.create_project("shop-web", None);
    emulator.set_auto_assign("shop-web", false);
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path(), &emulator);
    write_client(dir.path(), SHA1);
    run_checked(
        steward(&binary, dir.path(), &db, DAEMON_FDS, &["adopt", "shop"]),
        "adopt",
    );
    run_checked(
        steward(
            &binary,
            dir.path(),
            &db,
            DAEMON_FDS,
            &["apply", "shop", "--yes"],
        ),
        "first apply",
    );

    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").to_string()
    };
    let daemon = steward(
        &binary,
        dir.path(),
        &db,
        DAEMON_FDS,
        &["run", "--listen", &addr, "--interval", "1s"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("daemon");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let ready = Instant::now();
    while http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "the daemon never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("status_flood_bench: daemon with ulimit -n {DAEMON_FDS}, status port {addr}");
    let flood = Flood::open(&addr, connections);
    println!(
        "  flood: {} connections opened ({} idle, {} trickling a request head)",
        flood.streams.len(),
        flood.streams.len() / 2,
        flood.streams.len() - flood.streams.len() / 2
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("  connections held open after 1 s: {}", flood.still_open());

    write_client(dir.path(), SHA2);
    let started = Instant::now();
    let mut probes: Vec<Option<Duration>> = Vec::new();
    let outcome = loop {
        let probe = Instant::now();
        let answered = http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        probes.push(answered.then(|| probe.elapsed()));
        let (completed, rolled_back) = outcomes(&db).await;
        if rolled_back > 0 {
            break "rolled back (a local failure was judged as an unhealthy release)";
        }
        if completed >= 2 && production_sha(&emulator).await.as_deref() == Some(SHA2) {
            break "converged";
        }
        if started.elapsed() > Duration::from_secs(300) {
            break "not converged after 300 s";
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let took = started.elapsed();
    let held = flood.still_open();
    let answered: Vec<Duration> = probes.iter().flatten().copied().collect();
    let slowest = answered.iter().max().copied().unwrap_or_default();
    println!("  rollout: {outcome} in {:.1} s", took.as_secs_f64());
    println!("  connections held open at the end of the rollout: {held}");
    println!(
        "  /healthz during the rollout: {} of {} probes answered 200, slowest {} ms",
        answered.len(),
        probes.len(),
        slowest.as_millis()
    );
    drop(flood);
    let after = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    println!(
        "  /healthz after the flood: {}",
        if after { "answers" } else { "no answer" }
    );

    terminate(daemon);
    drop(emulator);
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .await;
}
