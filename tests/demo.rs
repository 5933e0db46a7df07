//! `steward demo`, the README's first command, run as a process: it exits 0 only when
//! every step did what the demo says it shows.

mod common;

use std::process::Command;

#[test]
fn the_demo_converges_the_canary_wave_first_undoes_the_failed_build_and_exits_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("demo")
        .env("DATABASE_URL", common::server_url())
        .env("NO_COLOR", "1")
        .output()
        .expect("run steward demo");
    common::assert_exit(&output, 0);
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    let all = format!("{out}{err}");
    for shown in [
        "1. Adopt each client's database",
        "promotion taken over: auto-assignment of production domains turned off",
        "5. The daemon rolls the release out; charlie's failed build is undone",
        "7. charlie's update records",
        "8. A staged rollout",
        "rollout stage 1/3: 10% of traffic on the new deployment",
        "9. A staged rollout aborted",
        "rollout aborted",
        "cleaned up",
    ] {
        assert!(all.contains(shown), "the demo shows `{shown}`:\n{all}");
    }
}
