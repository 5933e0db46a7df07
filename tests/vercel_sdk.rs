//! The official Vercel SDK (`@vercel/sdk`, pinned in `tests/sdk/package-lock.json`)
//! accepts every answer the emulator gives to the operations steward calls: the SDK
//! validates each response against Vercel's own schemas, so a missing required field, an
//! enum value Vercel does not have or a wrong type fails this test. `scripts/test`
//! installs Node and the SDK; without them this test fails (it never skips).

mod common;

use std::path::Path;
use std::time::Duration;

use steward::emulator::vercel::{EmulatorConfig, RunningEmulator, Traffic};

const TOKEN: &str = "sdk-conformance-token";

/// Every SDK operation behind a call steward makes (`src/vercel/client.rs`); the script
/// must report each, so dropping one from it fails here.
const OPERATIONS: &[&str] = &[
    "getProject",
    "createProjectEnv",
    "filterProjectEnvs",
    "editProjectEnv",
    "removeProjectEnv",
    "createDeployment",
    "getDeployment",
    "getDeployments",
    "requestPromote",
    "requestRollback",
    "pauseProject",
    "unpauseProject",
    "updateProject",
    "deleteRollingReleaseConfig",
    "updateRollingReleaseConfig",
    "getRollingReleaseConfig",
    "startRollingRelease",
    "getRollingRelease",
    "getRuntimeLogs",
    "approveRollingReleaseStage",
    "completeRollingRelease",
];

fn require_node_and_sdk(sdk_dir: &Path) {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "`node` is not installed: run scripts/test (it installs Node and the SDK), or `apt-get install nodejs npm`"
    );
    assert!(
        sdk_dir
            .join("node_modules/@vercel/sdk/package.json")
            .exists(),
        "tests/sdk/node_modules/@vercel/sdk is missing: run scripts/test (it runs `npm ci --prefix tests/sdk`)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_accepts_every_answer_to_the_operations_steward_calls() {
    let sdk_dir = common::repo_root().join("tests/sdk");
    require_node_and_sdk(&sdk_dir);
    let mut config = EmulatorConfig::new(TOKEN);
    config.build_time = Duration::from_millis(200);
    let emulator = RunningEmulator::start(config).await.expect("emulator");
    emulator.create_project("sdk-shop", None);
    // Traffic for every deployment, so the canary's runtime logs have lines to validate.
    emulator.set_traffic(
        "*",
        Traffic {
            requests_per_second: 100.0,
            error_rate: 0.1,
        },
    );

    let run = tokio::process::Command::new("node")
        .arg(sdk_dir.join("conformance.mjs"))
        .args([emulator.base_url.as_str(), TOKEN, "sdk-shop"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the conformance script finished within 180 s")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK rejected an answer (exit {:?}):\n{stdout}\n{stderr}",
        output.status.code()
    );
    let verdicts: Vec<&str> = stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    assert!(
        verdicts.iter().all(|l| l.starts_with("ok ")),
        "every operation line says ok:\n{stdout}"
    );
    for operation in OPERATIONS {
        assert!(
            verdicts
                .iter()
                .any(|l| l.split_whitespace().nth(1) == Some(operation)),
            "the script drives {operation}:\n{stdout}"
        );
    }
}
