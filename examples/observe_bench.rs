//! Observing 1,000 Vercel projects through the real client against the in-process
//! emulator, with bounded concurrency: requests per client (target: 1 in steady state),
//! wall time with 0 ms and 20 ms injected latency, and peak memory (VmHWM). Each
//! observation must also carry the project's promotion setting (taken over: off) from
//! that one request; the bench fails otherwise.
//!
//! Run: `cargo run --release --example observe_bench`.

use std::sync::Arc;
use std::time::Instant;

use steward::emulator::vercel::{EmulatorConfig, RunningEmulator};
use steward::secret::Secret;
use steward::vercel::{self, VercelClient};
use tokio::sync::Semaphore;

const PROJECTS: usize = 1_000;
const CONCURRENCY: usize = 32;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn observe_all(client: &VercelClient) -> usize {
    let semaphore = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..PROJECTS {
        let (client, semaphore) = (client.clone(), semaphore.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            // Counted only when the promotion setting came with the one request.
            vercel::observe(&client, &format!("client-{i:04}-web"))
                .await
                .is_ok_and(|o| !o.code.auto_promote)
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap_or(false) {
            ok += 1;
        }
    }
    ok
}

#[tokio::main]
async fn main() {
    let emulator = RunningEmulator::start(EmulatorConfig::new("bench-token"))
        .await
        .expect("emulator");
    // This measures steward, not Vercel's windows: lift the emulator's rate limits.
    emulator
        .set_rate_limits([("*".to_owned(), None)].into())
        .expect("every endpoint");
    for i in 0..PROJECTS {
        let project = format!("client-{i:04}-web");
        emulator.create_project(&project, None);
        // Taken over, as a fleet steward promotes is: the steady pass is what is measured.
        emulator.set_auto_assign(&project, false);
    }
    let client =
        VercelClient::new(&emulator.base_url, Secret::new("bench-token"), None).expect("client");
    println!("observing {PROJECTS} projects, concurrency {CONCURRENCY}");
    println!(
        "{:<14} {:>10} {:>18} {:>10}",
        "latency", "wall ms", "requests/client", "ok"
    );
    for latency in [0u64, 20] {
        emulator.update_faults(|f| f.latency_ms = latency);
        emulator.reset_stats();
        let start = Instant::now();
        let ok = observe_all(&client).await;
        let wall = start.elapsed();
        let per_client = emulator.requests() as f64 / PROJECTS as f64;
        println!(
            "{:<14} {:>10.0} {:>18.2} {:>10}",
            format!("{latency} ms"),
            wall.as_secs_f64() * 1000.0,
            per_client,
            ok
        );
        assert_eq!(ok, PROJECTS, "every observation read the promotion setting");
        assert!(
            (per_client - 1.0).abs() < f64::EPSILON,
            "a steady observation is one request per client, not {per_client}"
        );
    }
    println!(
        "peak memory (VmHWM, emulator and client in one process): {:.1} MiB",
        peak_rss_mib()
    );
}
