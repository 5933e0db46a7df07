//! What `--plan-hash` pins and what holds a plan: a real Postgres, the Vercel emulator over
//! HTTP, and the `steward` binary as a process.

mod common;

use common::fleet::{SHA1, SHA2, World};
use common::{assert_exit, stderr, stdout};

const PENDING: &str = "2024_12_02_001_invoices.up.sql";

/// A world whose migrations folder is a copy the test may edit.
async fn world_with_own_migrations() -> (World, tempfile::TempDir) {
    let world = World::new().await;
    let migrations = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&common::repo_root().join("migrations"), migrations.path());
    world.write_fleet(migrations.path(), "");
    (world, migrations)
}

async fn converge(world: &World) {
    world.setup(&["adopt", "shop"]);
    let out = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&out);
    assert_exit(&out, 0);
}

fn plan_json(world: &World) -> serde_json::Value {
    let out = world.steward(&["plan", "shop", "--format", "json"]);
    world.assert_no_secret(&out);
    serde_json::from_slice(&out.stdout).expect("plan json")
}

async fn scalar(world: &World, sql: &str) -> Option<String> {
    let mut conn = world.db.connect().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_optional(&mut conn)
        .await
        .expect("query")
}

async fn applied_version(world: &World) -> Option<String> {
    scalar(
        world,
        "select max(version) from (select distinct on (version) version, status from system_versions order by version, applied_at desc) v where status = 'applied'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_migration_edited_after_review_is_refused_with_nothing_run() {
    let (world, migrations) = world_with_own_migrations().await;
    converge(&world).await;
    world.write_client(SHA1, "2024_12_02_001", "info", "");
    let reviewed = plan_json(&world);
    let hash = reviewed["clients"][0]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();

    let file = migrations.path().join(PENDING);
    let sql = std::fs::read_to_string(&file).expect("read migration");
    std::fs::write(
        &file,
        format!("{sql}\ncreate table edited_after_review (id int);\n"),
    )
    .expect("edit migration");
    let now = plan_json(&world);
    assert_ne!(
        now["clients"][0]["hash"].as_str(),
        Some(hash.as_str()),
        "the edit is a different plan"
    );

    let events_before = scalar(&world, "select count(*)::text from steward_events").await;
    let out = world.steward(&["apply", "shop", "--yes", "--plan-hash", &hash]);
    world.assert_no_secret(&out);
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("does not match"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        applied_version(&world).await.as_deref(),
        Some("2024_11_18_001"),
        "no migration ran"
    );
    assert_eq!(
        scalar(
            &world,
            "select (to_regclass('edited_after_review') is not null)::text"
        )
        .await
        .as_deref(),
        Some("false"),
        "the edited SQL never ran"
    );
    assert_eq!(
        scalar(&world, "select count(*)::text from steward_events").await,
        events_before,
        "no update was started"
    );
}

async fn count(world: &World, sql: &str) -> i64 {
    let mut conn = world.db.connect().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_its_bake_is_promoted_once_over_three_applies_until_the_code_changes()
{
    let world = World::new().await;
    converge(&world).await;
    world.emulator.update_faults(|f| {
        f.unhealthy_in_production.insert(SHA2.to_owned());
    });
    world.write_client(SHA2, "2024_12_18_001", "debug", "");
    let promotions =
        "select count(*) from steward_events where step = 'promote' and outcome = 'succeeded'";
    let before = count(&world, promotions).await;

    let first = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&first);
    assert_exit(&first, 1);
    assert!(
        stdout(&first).contains("FAILED at bake"),
        "{}",
        stdout(&first)
    );
    assert_eq!(
        applied_version(&world).await.as_deref(),
        Some("2024_12_18_001"),
        "the schema was kept, so the next plan differs from the one that failed"
    );
    for _ in 0..2 {
        let again = world.steward(&["apply", "shop", "--yes"]);
        world.assert_no_secret(&again);
        assert_exit(&again, 3);
        assert!(
            stderr(&again).contains("this release failed at bake")
                && stderr(&again).contains("change the manifest or `steward retry shop`"),
            "apply says what releases the hold: {}",
            stderr(&again)
        );
    }
    assert_held_everywhere(
        &world,
        "failed",
        "this release failed at bake",
        "steward retry shop",
    );
    assert_eq!(
        count(&world, promotions).await - before,
        1,
        "promoted once over three applies"
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));

    // Another code version is another release: it runs without `retry`.
    const SHA3: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
    world.write_client(SHA3, "2024_12_18_001", "debug", "");
    let fixed = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&fixed);
    assert_exit(&fixed, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA3));
    assert_eq!(count(&world, promotions).await - before, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_its_bake_is_promoted_once_over_three_daemon_passes() {
    let world = World::new().await;
    converge(&world).await;
    world.emulator.update_faults(|f| {
        f.unhealthy_in_production.insert(SHA2.to_owned());
    });
    world.write_client(SHA2, "2024_12_18_001", "debug", "");
    let promotions =
        "select count(*) from steward_events where step = 'promote' and outcome = 'succeeded'";
    let before = count(&world, promotions).await;
    for _ in 0..3 {
        let pass = world.steward(&["run", "--once"]);
        world.assert_no_secret(&pass);
    }
    assert_eq!(
        count(&world, promotions).await - before,
        1,
        "the failed release was promoted once, though the kept schema changed its plan"
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    let status = world.steward(&["status", "shop"]);
    assert!(
        stdout(&status).contains("this release failed at bake"),
        "{}",
        stdout(&status)
    );
}

/// The hold shows in the plan's text, its PR comment and its JSON, with the command that
/// releases it.
#[track_caller]
fn assert_held_everywhere(world: &World, kind: &str, reason: &str, command: &str) {
    let text = world.steward(&["plan", "shop"]);
    world.assert_no_secret(&text);
    assert!(
        stdout(&text).contains(&format!("hold: {}", reason)) && stdout(&text).contains(command),
        "text:\n{}",
        stdout(&text)
    );
    let markdown = world.steward(&["plan", "shop", "--format", "markdown"]);
    world.assert_no_secret(&markdown);
    let md = stdout(&markdown);
    assert!(
        md.replace('\\', "").contains(reason) && md.contains(&format!("`{command}`")),
        "markdown:\n{md}"
    );
    let json = plan_json(world);
    let client = &json["clients"][0];
    assert_eq!(client["runnable"], false, "{client:#}");
    assert_eq!(client["holds"][0]["hold"]["kind"], kind, "{client:#}");
    assert!(
        client["holds"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(reason)),
        "{client:#}"
    );
    assert_eq!(client["holds"][0]["command"], command, "{client:#}");
}

/// Rewrite the client manifest's `apply: auto` as `apply: manual`.
fn make_manual(world: &World) {
    let path = world.path().join("clients/shop.yaml");
    let text = std::fs::read_to_string(&path).expect("read manifest");
    std::fs::write(&path, text.replace("apply: auto", "apply: manual")).expect("write manifest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_client_shows_its_approval_in_every_plan_and_runs_only_with_the_reviewed_hash() {
    let world = World::new().await;
    converge(&world).await;
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    make_manual(&world);
    let hash = plan_json(&world)["clients"][0]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let approve = format!("steward apply shop --plan-hash {hash}");
    assert_held_everywhere(
        &world,
        "awaiting_approval",
        &format!("awaiting approval: run `{approve}`"),
        &approve,
    );

    let dry_run = world.steward(&["apply", "shop", "--dry-run"]);
    assert_exit(&dry_run, 3);
    let unapproved = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&unapproved);
    assert_exit(&unapproved, 3);
    assert!(
        stderr(&unapproved).contains(&approve),
        "apply says what approves it: {}",
        stderr(&unapproved)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1), "nothing ran");

    let approved = world.steward(&["apply", "shop", "--yes", "--plan-hash", &hash]);
    world.assert_no_secret(&approved);
    assert_exit(&approved, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
}

/// A window on tomorrow's weekday: closed now, whatever the time.
fn closed_window() -> String {
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    format!(
        "  schedule: {{ timezone: UTC, windows: [\"{} 02:00-03:00\"] }}\n",
        tomorrow.format("%a")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_apply_refuses_and_ignore_window_runs_it_and_records_who_did() {
    let world = World::new().await;
    converge(&world).await;
    world.write_client(SHA2, "2024_11_18_001", "info", &closed_window());
    assert_held_everywhere(
        &world,
        "outside_window",
        "outside the maintenance window; next opens",
        "steward apply shop --ignore-window",
    );

    let held = world.steward(&["apply", "shop", "--yes"]);
    world.assert_no_secret(&held);
    assert_exit(&held, 3);
    assert!(
        stderr(&held).contains("`steward apply shop --ignore-window`"),
        "{}",
        stderr(&held)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1), "nothing ran");

    let out = world
        .command(&["apply", "shop", "--yes", "--ignore-window"])
        .env("STEWARD_ACTOR", "alice")
        .output()
        .expect("apply");
    world.assert_no_secret(&out);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("maintenance window ignored (--ignore-window)"),
        "the plan it ran says so: {}",
        stdout(&out)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
    let recorded = scalar(
        &world,
        "select actor || ': ' || detail from steward_events where step = 'apply' and outcome = 'started' order by id desc limit 1",
    )
    .await
    .unwrap_or_default();
    assert!(
        recorded.contains("--ignore-window: started outside the maintenance window by")
            && recorded.contains("alice"),
        "{recorded}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_change_says_in_its_plan_that_it_bypasses_the_window() {
    let world = World::new().await;
    converge(&world).await;
    let urgent = closed_window().replace("] }", "], urgent: true }");
    world.write_client(SHA2, "2024_11_18_001", "info", &urgent);
    let json = plan_json(&world);
    let client = &json["clients"][0];
    assert_eq!(client["runnable"], true, "{client:#}");
    assert!(
        client["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .any(|n| n == "maintenance window bypassed: urgent"),
        "{client:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_rolled_back_by_hand_is_held_until_the_manifest_changes_or_retry() {
    let world = World::new().await;
    converge(&world).await;
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    assert_exit(&world.steward(&["apply", "shop", "--yes"]), 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));

    let rollback = world.steward(&["rollback", "shop", "--code"]);
    assert_exit(&rollback, 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));

    // The manifest still names SHA2: neither a plan nor apply rolls forward to it.
    let plan = plan_json(&world);
    let holds = plan["clients"][0]["holds"].to_string();
    assert!(
        holds.contains("rolled back by hand") && holds.contains("steward retry shop"),
        "{holds}"
    );
    let apply = world.steward(&["apply", "shop", "--yes"]);
    assert_exit(&apply, 3);
    assert!(
        stdout(&apply).contains("rolled back by hand")
            || stderr(&apply).contains("rolled back by hand"),
        "apply says what holds it:\n{}\n{}",
        stdout(&apply),
        stderr(&apply)
    );
    let once = world.steward(&["run", "--once"]);
    assert!(
        matches!(once.status.code(), Some(0..=3)),
        "{}",
        stderr(&once)
    );
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "a daemon pass does not roll forward either"
    );

    assert_exit(&world.steward(&["retry", "shop"]), 0);
    assert_exit(&world.steward(&["apply", "shop", "--yes"]), 0);
    assert_eq!(world.production_sha().as_deref(), Some(SHA2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_by_hand_during_the_bake_fails_the_run_and_holds_the_release() {
    let world = World::new().await;
    converge(&world).await;
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    let manifest = world.path().join("clients/shop.yaml");
    let text = std::fs::read_to_string(&manifest).expect("read");
    std::fs::write(&manifest, text.replace("bake: 600ms", "bake: 4s")).expect("write");

    let apply = world
        .command(&["apply", "shop", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn apply");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while world.production_sha().as_deref() != Some(SHA2) {
        assert!(std::time::Instant::now() < deadline, "never promoted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Promoted, and baking: an operator puts the previous deployment back.
    assert_exit(&world.steward(&["rollback", "shop", "--code"]), 0);
    let out = apply.wait_with_output().expect("apply");
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("production moved to") && stdout(&out).contains("during the bake"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA1),
        "the operator's rollback stands"
    );
    let plan = plan_json(&world);
    assert!(
        plan["clients"][0]["holds"]
            .to_string()
            .contains("steward retry shop"),
        "the release is held, not promoted again: {}",
        plan["clients"][0]["holds"]
    );
}
