//! Helpers for tests that run a daemon or a Git checkout: git with a test identity, a
//! free port, the daemon's loop counter from `/metrics`, and SIGTERM-then-wait.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// `git -C DIR ARGS` with a test identity; fails the test on error, returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        super::stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A loopback address with a port nobody listens on (yet).
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    format!("127.0.0.1:{}", listener.local_addr().expect("addr").port())
}

/// `steward_loops_total` from the status server at `addr`, if it answers.
pub async fn loops_total(addr: &str) -> Option<u64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("steward_loops_total "))
        .and_then(|n| n.parse().ok())
}

/// Wait until the daemon at `addr` finished its first pass (bake and record included).
pub async fn first_pass_done(addr: &str) -> u64 {
    for _ in 0..600 {
        if let Some(n) = loops_total(addr).await.filter(|n| *n >= 1) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the first pass never finished");
}

/// SIGTERM, then the exit status; fails the test if the process takes over 20 s.
pub async fn terminate(mut child: Child) -> ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    panic!("the process did not exit within 20 s of SIGTERM")
}
