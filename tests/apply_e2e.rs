//! Plan and apply end to end: a real Postgres, the Vercel emulator over HTTP, and the
//! `steward` binary as a process.

mod common;

use common::fleet::{SHA1, SHA2, STRIPE, World};
use common::{assert_exit, stderr, stdout};
use sqlx::Row;

async fn schema_version(world: &World) -> Option<String> {
    let mut conn = world.db.connect().await;
    let rows = sqlx::query("select distinct on (version) version, status from system_versions order by version, applied_at desc")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
    rows.into_iter()
        .filter(|r| r.get::<String, _>("status") == "applied")
        .map(|r| r.get::<String, _>("version"))
        .max()
}

async fn events(world: &World) -> Vec<(String, String, Option<String>)> {
    let mut conn = world.db.connect().await;
    sqlx::query("select step, outcome, error from steward_events order by id")
        .fetch_all(&mut conn)
        .await
        .expect("events")
        .into_iter()
        .map(|r| (r.get("step"), r.get("outcome"), r.get("error")))
        .collect()
}

async fn events_text(world: &World) -> String {
    let mut conn = world.db.connect().await;
    let rows = sqlx::query("select row_to_json(e)::text as j from steward_events e")
        .fetch_all(&mut conn)
        .await
        .expect("events");
    rows.into_iter()
        .map(|r| r.get::<String, _>("j"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn converge_fresh(world: &World) {
    let adopt = world.steward(&["adopt", "shop"]);
    assert_eq!(adopt.status.code(), Some(0), "{}", stderr(&adopt));
    let out = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&out);
    assert_exit(&out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_client_converges_to_its_target_and_then_has_nothing_to_do() {
    let world = World::new().await;
    let plan = world.steward(&["plan", "shop", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(3),
        "not adopted yet, so blocked: {}\n{}",
        stdout(&plan),
        stderr(&plan)
    );
    assert!(stdout(&plan).contains("not adopted"), "{}", stdout(&plan));

    converge_fresh(&world).await;
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2024_11_18_001")
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    let (value, kind) = world.env("STRIPE_SECRET_KEY").expect("env written");
    assert_eq!((value.as_str(), kind.as_str()), (STRIPE, "sensitive"));
    assert_eq!(
        world.env("LOG_LEVEL").map(|(v, _)| v).as_deref(),
        Some("info")
    );

    let again = world.steward(&["plan", "shop", "--detailed-exitcode"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "converged: {}",
        stdout(&again)
    );
    let recorded = events(&world).await;
    assert!(
        recorded
            .iter()
            .any(|(step, outcome, _)| step == "apply" && outcome == "completed"),
        "{recorded:?}"
    );
    let history = world.steward(&["history", "shop"]);
    assert!(
        stdout(&history).contains("completed"),
        "{}",
        stdout(&history)
    );
    world.assert_no_secret(&history);
    assert!(!events_text(&world).await.contains(STRIPE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_env_and_code_change_together_in_the_guarded_order() {
    let world = World::new().await;
    converge_fresh(&world).await;
    world.write_client(SHA2, "2025_01_13_001", "debug", "");
    let plan = world.steward(&["plan", "shop", "--format", "json"]);
    world.assert_no_secret(&plan);
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    let kinds: Vec<&str> = json["clients"][0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"]["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        [
            "preflight",
            "backup",
            "migrate_up",
            "verify",
            "set_env",
            "deploy",
            "wait_ready",
            "health_check",
            "promote",
            "bake",
            "record"
        ]
    );
    let hash = json["clients"][0]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();

    let out = world.steward(&["apply", "shop", "--yes", "--plan-hash", &hash]);
    world.assert_no_secret(&out);
    assert_exit(&out, 0);
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2025_01_13_001")
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    assert_eq!(
        world.env("LOG_LEVEL").map(|(v, _)| v).as_deref(),
        Some("debug")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_rolls_the_schema_and_env_back_and_leaves_production_alone() {
    let world = World::new().await;
    converge_fresh(&world).await;
    world.emulator.update_faults(|f| {
        f.fail_shas.insert(SHA2.to_owned());
    });
    world.write_client(SHA2, "2024_12_18_001", "debug", "");
    let out = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&out);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("FAILED at wait_ready") && stdout(&out).contains("BUILD_FAILED"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2024_11_18_001"),
        "migrations undone"
    );
    assert_eq!(
        world.env("LOG_LEVEL").map(|(v, _)| v).as_deref(),
        Some("info"),
        "env restored"
    );
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "production unchanged"
    );
    let recorded = events(&world).await;
    assert!(
        recorded
            .iter()
            .any(|(step, outcome, _)| step == "apply" && outcome == "rolled_back"),
        "{recorded:?}"
    );

    // The Failed state holds the same release until the manifest changes or someone retries.
    let status = world.steward(&["status", "shop"]);
    assert!(stdout(&status).contains("Failed"), "{}", stdout(&status));
    assert!(
        stdout(&status)
            .contains("target schema 2024_12_18_001 (pending: 2024_12_02_001, 2024_12_18_001)"),
        "the schema part names the versions still to run: {}",
        stdout(&status)
    );
    let held = world.steward(&["apply", "shop", "--yes"]);
    assert!(
        stdout(&held).contains("failed at wait_ready"),
        "{}",
        stdout(&held)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_failure_while_baking_rolls_code_and_env_back_but_keeps_the_schema() {
    let world = World::new().await;
    converge_fresh(&world).await;
    world.emulator.update_faults(|f| {
        f.unhealthy_in_production.insert(SHA2.to_owned());
    });
    world.write_client(SHA2, "2024_12_18_001", "debug", "");
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("FAILED at bake"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("KEPT: migrate_up"),
        "said loudly: {}",
        stdout(&out)
    );
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "code rolled back"
    );
    assert_eq!(
        world.env("LOG_LEVEL").map(|(v, _)| v).as_deref(),
        Some("info"),
        "env rolled back"
    );
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2024_12_18_001"),
        "schema kept"
    );
    let recorded = events(&world).await;
    let last = recorded
        .iter()
        .rev()
        .find(|(step, _, _)| step == "apply")
        .expect("apply event");
    assert!(
        last.2
            .as_deref()
            .unwrap_or_default()
            .contains("schema is kept"),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verify_undoes_the_migrations_and_deploys_nothing() {
    let world = World::new().await;
    converge_fresh(&world).await;
    world.write_client(SHA2, "2024_12_18_001", "info", "");
    let text = std::fs::read_to_string(world.path().join("clients/shop.yaml")).expect("read");
    std::fs::write(
        world.path().join("clients/shop.yaml"),
        text.replace(
            "verify: {rlsTables: [accounts]}",
            "verify: {rlsTables: [accounts], checks: [{name: impossible, sql: select false}]}",
        ),
    )
    .expect("write");
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("FAILED at verify") && stdout(&out).contains("impossible"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2024_11_18_001")
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    let deployments = world.emulator.with_state(|s| s.deployments.len());
    assert_eq!(deployments, 1, "nothing new was built");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_hash_that_differs_from_the_reviewed_one_is_refused() {
    let world = World::new().await;
    converge_fresh(&world).await;
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    let out = world.steward(&["apply", "shop", "--yes", "--plan-hash", "0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_changed_in_the_dashboard_is_detected_as_drift_and_put_back() {
    let world = World::new().await;
    converge_fresh(&world).await;
    // Someone edits LOG_LEVEL in the dashboard: new value, comment untouched, updatedAt moves.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let client = reqwest::Client::new();
    let envs: serde_json::Value = client
        .get(format!(
            "{}/v10/projects/shop-web/env",
            world.emulator.base_url
        ))
        .bearer_auth(common::fleet::TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let id = envs["envs"]
        .as_array()
        .expect("envs")
        .iter()
        .find(|e| e["key"] == "LOG_LEVEL")
        .expect("var")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let edited = client
        .patch(format!(
            "{}/v9/projects/shop-web/env/{id}",
            world.emulator.base_url
        ))
        .bearer_auth(common::fleet::TOKEN)
        .json(&serde_json::json!({"value": "trace"}))
        .send()
        .await
        .expect("patch");
    assert!(edited.status().is_success());
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        stdout(&plan).contains("LOG_LEVEL changed")
            && stdout(&plan).contains("changed outside steward"),
        "{}",
        stdout(&plan)
    );
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        world.env("LOG_LEVEL").map(|(v, _)| v).as_deref(),
        Some("info")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_after_migrating_resumes_with_only_the_remaining_steps() {
    let world = World::new().await;
    converge_fresh(&world).await;
    world.emulator.update_faults(|f| {
        f.stuck_shas.insert(SHA2.to_owned());
    });
    world.write_client(SHA2, "2024_12_18_001", "debug", "");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["apply", "shop", "--yes", "--fleet"])
        .arg(world.path())
        .env("TEST_VERCEL_TOKEN", common::fleet::TOKEN)
        .env("TEST_FINGERPRINT_KEY", common::fleet::FINGERPRINT_KEY)
        .env("TEST_SHOP_DATABASE_URL", &world.db.url)
        .env("TEST_STRIPE_KEY", STRIPE)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the build is under way: schema migrated and env written before it.
    for _ in 0..200 {
        if world.emulator.with_state(|s| s.deployments.len()) >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2024_12_18_001"),
        "the migration had run"
    );
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "the deploy had not"
    );

    world.emulator.update_faults(|f| f.stuck_shas.clear());
    let plan = world.steward(&["plan", "shop", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    let kinds: Vec<&str> = json["clients"][0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"]["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        [
            "preflight",
            "deploy",
            "wait_ready",
            "health_check",
            "promote",
            "bake",
            "record"
        ],
        "only what is left"
    );
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    assert_eq!(
        world.emulator.with_state(|s| s.deployments.len()),
        2,
        "the build that was under way was reused"
    );
}

/// A release whose build fails and which rotates the sensitive value to a new secret
/// reference (`TEST_STRIPE_KEY_V2`): its env is set, then undone.
fn rotate_into_a_failing_release(world: &World) {
    world.emulator.update_faults(|f| {
        f.fail_shas.insert(SHA2.to_owned());
    });
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    let manifest = world.path().join("clients/shop.yaml");
    let text = std::fs::read_to_string(&manifest).expect("read");
    std::fs::write(
        &manifest,
        text.replace("{env: TEST_STRIPE_KEY,", "{env: TEST_STRIPE_KEY_V2,"),
    )
    .expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_sensitive_value_is_put_back_from_its_previous_secret_reference_when_the_update_fails()
 {
    const ROTATED: &str = "sk_live_ROTATED_1a2b3c4d5e6f";
    let world = World::new().await;
    converge_fresh(&world).await;
    rotate_into_a_failing_release(&world);
    let plan = world
        .command(&["plan", "shop"])
        .env("TEST_STRIPE_KEY_V2", ROTATED)
        .output()
        .expect("plan");
    assert!(
        stdout(&plan).contains("re-applied from the secret reference"),
        "the plan says how the sensitive value would come back:\n{}",
        stdout(&plan)
    );
    let out = world
        .command(&["apply", "shop", "--yes"])
        .env("TEST_STRIPE_KEY_V2", ROTATED)
        .output()
        .expect("apply");
    world.assert_no_secret(&out);
    assert!(
        !format!("{}{}", stdout(&out), stderr(&out)).contains(ROTATED),
        "the rotated value leaked"
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let (value, kind) = world.env("STRIPE_SECRET_KEY").expect("variable");
    assert_eq!(kind, "sensitive");
    assert_eq!(
        value, STRIPE,
        "the value from the previous revision's reference is back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_that_cannot_put_a_rotated_value_back_says_so_in_the_record_status_and_notification()
 {
    const ROTATED: &str = "sk_live_ROTATED_9z8y7x6w5v4u";
    let hook = common::hooks::Receiver::start(0).await;
    let world = World::new().await;
    converge_fresh(&world).await;
    world.write_fleet(
        &common::repo_root().join("migrations"),
        "  notify:\n    webhooks: [{url: {env: TEST_HOOK_URL}}]\n",
    );
    rotate_into_a_failing_release(&world);
    // The previous value's reference no longer resolves here: the undo cannot restore it.
    let out = world
        .command(&["apply", "shop", "--yes"])
        .env("TEST_STRIPE_KEY_V2", ROTATED)
        .env_remove("TEST_STRIPE_KEY")
        .env("TEST_HOOK_URL", &hook.url)
        .output()
        .expect("apply");
    world.assert_no_secret(&out);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!said.contains(ROTATED), "the rotated value leaked");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("undo failed: set_env"), "{said}");

    let recorded = events(&world).await;
    let undone = recorded
        .iter()
        .find(|(step, outcome, _)| step == "set_env" && outcome == "undone")
        .unwrap_or_else(|| panic!("the set_env undo is recorded: {recorded:?}"));
    assert!(
        undone
            .2
            .as_deref()
            .is_some_and(|e| e.contains("TEST_STRIPE_KEY")),
        "the undo's record says it failed, and why: {undone:?}"
    );
    let run = recorded
        .iter()
        .rev()
        .find(|(step, outcome, _)| {
            step == "apply" && matches!(outcome.as_str(), "failed" | "rolled_back")
        })
        .expect("the run's outcome");
    assert!(
        run.2
            .as_deref()
            .is_some_and(|e| e.contains("undo failed: set_env")),
        "{run:?}"
    );

    let status = world
        .command(&["status", "shop"])
        .env("TEST_STRIPE_KEY_V2", ROTATED)
        .output()
        .expect("status");
    assert!(
        stdout(&status).contains("Failed") && stdout(&status).contains("undo failed: set_env"),
        "status flags the client for a person:\n{}",
        stdout(&status)
    );
    let texts: Vec<String> = hook
        .received()
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("undo incomplete") && t.contains("a person must look")),
        "the operators are told the undo is incomplete: {texts:?}"
    );
    let bodies = serde_json::to_string(&hook.received()).expect("json");
    assert!(
        !bodies.contains(ROTATED) && !bodies.contains(STRIPE),
        "a secret reached a webhook"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applies_at_once_on_one_client_never_both_run_the_plan() {
    let world = World::new().await;
    let adopt = world.steward(&["adopt", "shop"]);
    assert_eq!(adopt.status.code(), Some(0), "{}", stderr(&adopt));
    let spawn = || {
        world
            .command(&["apply", "shop", "--yes"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    // One holds the lock and applies; the other waits for it, re-plans under the lock and
    // finds nothing to do (exit 0), or gives up waiting and refuses (exit 3).
    for out in [&a, &b] {
        world.assert_no_secret(out);
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{}\n{}",
            stdout(out),
            stderr(out)
        );
    }
    let recorded = events(&world).await;
    let started = recorded
        .iter()
        .filter(|(step, outcome, _)| step == "apply" && outcome == "started")
        .count();
    let deploys = recorded
        .iter()
        .filter(|(step, outcome, _)| step == "deploy" && outcome == "succeeded")
        .count();
    assert_eq!(
        (started, deploys),
        (1, 1),
        "the plan ran once: {recorded:?}"
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_irreversible_downgrade_under_policy_restore_restores_the_backup_and_keeps_the_records()
{
    let world = World::new().await;
    let migrations = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&common::repo_root().join("migrations"), migrations.path());
    std::fs::write(
        migrations.path().join("2099_01_01_001_audit_log.up.sql"),
        "create table audit_log (id bigint primary key, note text);\ninsert into audit_log values (1, 'written after the backup');\n",
    )
    .expect("write");
    world.write_fleet(migrations.path(), "");
    converge_fresh(&world).await;
    world.write_client(SHA1, "2099_01_01_001", "info", "");
    let up = world.steward(&["apply", "shop", "--yes"]);
    assert_eq!(up.status.code(), Some(0), "{}", stdout(&up));
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2099_01_01_001")
    );

    // Without the policy the downgrade is blocked: 2099_01_01_001 has no .down.sql.
    world.write_client(SHA1, "2024_11_18_001", "info", "");
    let blocked = world.steward(&["apply", "shop", "--yes"]);
    assert_eq!(blocked.status.code(), Some(3), "{}", stdout(&blocked));

    world.write_client(
        SHA1,
        "2024_11_18_001",
        "info",
        "    irreversible: restore\n",
    );
    let plan = world.steward(&["plan", "shop"]);
    assert!(
        stdout(&plan).contains("restore: backup") && stdout(&plan).contains("discarded"),
        "{}",
        stdout(&plan)
    );
    let down = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&down);
    assert_exit(&down, 0);
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2024_11_18_001")
    );
    let mut conn = world.db.connect().await;
    let audit: Option<String> = sqlx::query_scalar("select to_regclass('audit_log')::text")
        .fetch_one(&mut conn)
        .await
        .expect("regclass");
    assert_eq!(audit, None, "the irreversible migration's table is gone");
    let status: String = sqlx::query_scalar(
        "select status from system_versions where version = '2099_01_01_001' order by applied_at desc limit 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("a row for the undone version");
    assert_eq!(
        status, "rolled_back",
        "the undone version is marked as the guide does"
    );
    let completed: i64 = sqlx::query_scalar(
        "select count(*) from steward_events where step = 'apply' and outcome = 'completed'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("events");
    assert_eq!(
        completed, 3,
        "every update record survived the restore, this one included"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_closes_mid_update_lets_the_running_step_and_its_checks_finish_and_starts_no_new_change()
 {
    use chrono::{Duration as Minutes, Timelike, Utc};
    use std::time::Duration;

    let world = World::new().await;
    converge_fresh(&world).await;
    // Windows are whole minutes: start with at least 10 s of this one left, and end it
    // at the next minute (never across midnight).
    let now = loop {
        let now = Utc::now();
        if now.second() <= 50 && !(now.hour() == 23 && now.minute() == 59) {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let end = now.with_second(0).expect("minute") + Minutes::minutes(1);
    let start = (end - Minutes::minutes(30)).max(
        end.with_hour(0)
            .and_then(|t| t.with_minute(0))
            .expect("midnight"),
    );
    let window = format!(
        "{} {}-{}",
        now.format("%a"),
        start.format("%H:%M"),
        end.format("%H:%M")
    );
    // The build stays in BUILDING (wait_ready, a check) until the window has closed.
    world.emulator.update_faults(|f| {
        f.stuck_shas.insert(SHA2.to_owned());
    });
    world.write_client(
        SHA2,
        "2024_12_18_001",
        "debug",
        &format!("  schedule: {{ timezone: UTC, windows: [\"{window}\"] }}\n"),
    );
    let child = world
        .command(&["apply", "shop", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn apply");
    let closed = end + Minutes::seconds(1);
    while Utc::now() < closed {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world.emulator.update_faults(|f| {
        f.stuck_shas.clear();
    });
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("apply");
    world.assert_no_secret(&out);
    assert!(
        stdout(&out).contains("interrupted: the maintenance window closed")
            && stdout(&out).contains("after health_check"),
        "the build and its checks finished, the promote did not start:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(2), "changes remain");
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "production untouched"
    );
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2024_12_18_001"),
        "the migration made inside the window stays, verified"
    );
    assert!(
        events_text(&world)
            .await
            .contains("interrupted: the maintenance window closed"),
        "recorded in steward_events"
    );
    // Outside the window nothing more starts until it opens again.
    let held = world.steward(&["apply", "shop", "--yes"]);
    assert!(
        stdout(&held).contains("outside the maintenance window"),
        "{}",
        stdout(&held)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_record_that_cannot_be_written_still_lets_the_undo_run_and_says_so() {
    let world = World::new().await;
    converge_fresh(&world).await;
    // The database refuses exactly one record: the failure of wait_ready.
    let mut conn = world.db.connect().await;
    sqlx::raw_sql(
        "CREATE SCHEMA test_faults;
         CREATE FUNCTION test_faults.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.step = 'wait_ready' AND NEW.outcome = 'failed' THEN
             RAISE EXCEPTION 'the record store is full (test)';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_failed_wait BEFORE INSERT ON steward_events
           FOR EACH ROW EXECUTE FUNCTION test_faults.refuse();",
    )
    .execute(&mut conn)
    .await
    .expect("install the refusing trigger");
    // The trigger's function is a schema change of the test's own: accepted as reviewed.
    world.setup(&["drift", "accept", "shop"]);
    world.emulator.update_faults(|f| {
        f.fail_shas.insert(SHA2.to_owned());
    });
    world.write_client(SHA2, "2024_12_18_001", "debug", "");
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("FAILED at wait_ready")
            && stdout(&out).contains("update record not written")
            && stdout(&out).contains("the record store is full"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2024_11_18_001"),
        "migrations undone"
    );
    assert_eq!(
        world.env("LOG_LEVEL").map(|(v, _)| v).as_deref(),
        Some("info"),
        "env restored"
    );
    let recorded = events(&world).await;
    assert!(
        recorded
            .iter()
            .any(|(step, outcome, _)| step == "migrate_up" && outcome == "undone")
            && recorded
                .iter()
                .any(|(step, outcome, _)| step == "apply" && outcome == "rolled_back"),
        "the undo and the end of the run are recorded: {recorded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_observes_each_client_once_and_runs_the_plan_it_showed() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    // A schema-only change: no step of this plan reads Vercel for its guard, so every
    // project read is an observation.
    world.write_client(SHA1, "2024_12_02_001", "info", "");
    let shown = world.steward(&["plan", "shop", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("plan json");
    let hash = plan["clients"][0]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();

    world.emulator.reset_stats();
    let out = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&out, 0);
    let project_reads: u64 = world.emulator.with_state(|s| {
        s.stats
            .by_route
            .iter()
            .filter(|(route, _)| route.starts_with("GET /v9/projects"))
            .map(|(_, n)| n)
            .sum()
    });
    assert_eq!(
        project_reads, 1,
        "one observation of the project for plan, show and run"
    );
    assert_eq!(
        schema_version(&world).await.as_deref(),
        Some("2024_12_02_001")
    );
    let mut conn = world.db.connect().await;
    let ran: String = sqlx::query_scalar(
        "select plan_hash from steward_events where step = 'apply' and outcome = 'completed' order by id desc limit 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the run's record");
    assert_eq!(ran, hash, "the plan that ran is the plan that was shown");
}
