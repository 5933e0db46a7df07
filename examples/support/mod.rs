//! What the benchmarks share: the admin database URL and the release `steward` binary
//! they run as a process. Included with `#[path = "support/mod.rs"] mod support;`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `STEWARD_BENCH_DATABASE_URL`, else the local server with trust auth.
pub fn admin_url() -> String {
    std::env::var("STEWARD_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The release `steward` binary next to the running example, built if missing.
pub fn steward_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/examples")
        .join("steward");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--bin", "steward"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "cannot build steward");
    }
    binary
}
