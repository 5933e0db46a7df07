//! A backup streamed to an S3-compatible store keeps steward's memory flat: a database of
//! about 1 GiB (`-- MIB` to change it) is dumped by the real `pg_dump` and copied to moto's
//! S3 server through `object_store` in 8 MiB parts, while this bench samples the `steward`
//! process's peak resident memory (VmHWM). Prints the dump's size, the time, and the peak.
//!
//! Run: `cargo run --release --example backup_store_bench [-- MIB]`. Needs a local Postgres
//! (`STEWARD_BENCH_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`) and
//! `moto_server` (`pip install 'moto[server]'`); creates and drops one database.

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{admin_url, steward_binary};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Peak resident memory of a process, in KiB, from /proc.
fn peak_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let admin_url = admin_url();
    let name = format!("steward_bench_store_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await.expect("admin");
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .expect("create database");
    let url = with_database(&admin_url, &name);

    // About `mib` MiB of random bytes, which do not compress: the dump is as large.
    let started = Instant::now();
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let rows = mib * 1024 * 1024 / 200;
    conn.execute(AssertSqlSafe(format!(
        "CREATE TABLE filler (id bigint PRIMARY KEY, noise bytea);
         INSERT INTO filler SELECT g, decode(md5(random()::text) || md5(random()::text)
                || md5(random()::text) || md5(random()::text) || md5(random()::text)
                || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex')
         FROM generate_series(1, {rows}) g;"
    )))
    .await
    .expect("fill");
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await
        .expect("size");
    conn.close().await.ok();
    println!(
        "database: {:.0} MiB ({rows} rows) filled in {:.1} s",
        size as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut moto = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]')");
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let up = Instant::now();
    while http
        .put(format!("{endpoint}/bench"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(up.elapsed() < Duration::from_secs(60), "moto did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("clients")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("migrations")).expect("mkdir");
    std::fs::write(
        dir.path().join("fleet.yaml"),
        "apiVersion: steward/v1\nkind: Fleet\nspec:\n  migrations: migrations\n  backups:\n    dir: backups\n    store: s3://bench/fleet\n    s3: {endpoint: {env: BENCH_S3_ENDPOINT}, accessKeyId: {env: BENCH_S3_KEY}, secretAccessKey: {env: BENCH_S3_SECRET}}\n  vercel: {token: {env: BENCH_VERCEL_TOKEN}}\n",
    )
    .expect("fleet");
    std::fs::write(
        dir.path().join("migrations/2024_01_01_001_start.up.sql"),
        "SELECT 1;\n",
    )
    .expect("migration");
    std::fs::write(
        dir.path().join("clients/bench.yaml"),
        "apiVersion: steward/v1\nkind: Client\nmetadata: {name: bench}\nspec:\n  code: {project: bench-web, version: v1.0.0}\n  database:\n    url: {env: BENCH_DATABASE_URL}\n    schemaVersion: 2024_01_01_001\n",
    )
    .expect("client");
    let steward = steward_binary();
    let run = |args: &[&str]| {
        Command::new(&steward)
            .args(args)
            .arg("--fleet")
            .arg(dir.path())
            .env("BENCH_DATABASE_URL", &url)
            .env("BENCH_S3_ENDPOINT", &endpoint)
            .env("BENCH_S3_KEY", "bench")
            .env("BENCH_S3_SECRET", "bench-secret")
            .env("BENCH_VERCEL_TOKEN", "unused")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("steward")
    };
    let adopt = run(&["adopt", "bench"]).wait_with_output().expect("adopt");
    assert!(
        adopt.status.success(),
        "{}",
        String::from_utf8_lossy(&adopt.stderr)
    );

    let started = Instant::now();
    let child = run(&["backup", "bench"]);
    let pid = child.id();
    let mut peak = 0;
    let sampler = std::thread::spawn(move || {
        while let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let output = child.wait_with_output().expect("backup");
    let elapsed = started.elapsed();
    let peak = sampler.join().expect("sampler");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump_size: u64 = std::fs::read_dir(dir.path().join("backups/bench"))
        .expect("backups")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "dump"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "backup to the store: dump {:.0} MiB in {:.1} s; steward's peak RSS {:.1} MiB (target: under 50 MiB)",
        dump_size as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        peak as f64 / 1024.0
    );

    let _ = moto.kill();
    let _ = moto.wait();
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .await
        .ok();
}
