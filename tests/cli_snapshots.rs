//! What `status`, `plan` and `history` print, in text and JSON, pinned as insta
//! snapshots (`tests/snapshots/`); times, ids and hashes are redacted, everything else
//! is the real output of the binary against Postgres and the Vercel emulator.

mod common;

use common::fleet::World;
use common::{assert_exit, stdout};

/// Redact what changes from run to run; keep everything a reader sees.
fn redacted() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in [
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            "[timestamp]",
        ),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?( UTC)?", "[time]"),
        (r"\b\d{8}T\d{6}(\.\d+)?Z\b", "[backup]"),
        (r"dpl_[A-Za-z0-9]+", "[deployment]"),
        (r"steward cli \([^)]*\)", "steward cli ([user@host])"),
        (r"\b\d+(\.\d+)? (ms|s)\b", "[duration]"),
        (r#""duration_ms": \d+"#, r#""duration_ms": "[duration]""#),
        (r"\b[0-9a-f]{16}\b", "[hash]"),
        (
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            "[identity]",
        ),
        (r"steward_test_\d+_[0-9a-f]+", "[database]"),
        (r"http://127\.0\.0\.1:\d+", "http://[emulator]"),
        // Column widths follow the longest (redacted) value: keep the gaps, not their width.
        (r" {2,}", "  "),
    ] {
        settings.add_filter(pattern, replacement);
    }
    settings
}

fn run(world: &World, args: &[&str]) -> String {
    let out = world.steward(args);
    world.assert_no_secret(&out);
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_plan_and_history_read_the_same_way_every_time() {
    let world = World::new().await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    let _guard = redacted().bind_to_scope();

    let status = run(&world, &["status"]);
    insta::assert_snapshot!("status_pending_text", status);
    insta::assert_snapshot!(
        "status_pending_json",
        run(&world, &["status", "--format", "json"])
    );
    insta::assert_snapshot!("plan_pending_text", run(&world, &["plan"]));
    insta::assert_snapshot!(
        "plan_pending_json",
        run(&world, &["plan", "--format", "json"])
    );

    assert_exit(&world.steward(&["apply", "shop", "--yes"]), 0);
    insta::assert_snapshot!("status_converged_text", run(&world, &["status", "shop"]));
    insta::assert_snapshot!(
        "status_converged_json",
        run(&world, &["status", "--format", "json"])
    );
    insta::assert_snapshot!("history_text", run(&world, &["history", "shop"]));
    insta::assert_snapshot!(
        "history_json",
        run(&world, &["history", "shop", "--format", "json"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_calls_steps_still_to_run_pending_and_counts_phases_in_a_footer() {
    let world = World::new().await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    let text = run(&world, &["status"]);
    assert!(text.contains("pending: "), "{text}");
    assert!(
        !text.contains("completed"),
        "nothing has completed yet: {text}"
    );
    assert!(
        text.trim_end().ends_with("1 client: 1 pending"),
        "footer: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_window_is_shown_only_for_clients_that_have_windows() {
    let world = World::new().await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    let json = |world: &World| -> serde_json::Value {
        serde_json::from_str(&run(world, &["status", "--format", "json"])).expect("json")
    };
    let without = json(&world);
    assert!(
        without["clients"][0]["window"].is_null(),
        "no windows, no window: {without}"
    );
    assert!(
        !run(&world, &["status"]).contains("open now"),
        "a client without windows is not 'open now'"
    );

    // A window that is never open now: the day after today, one minute long.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2)).format("%a");
    world.write_client(
        common::fleet::SHA1,
        "2024_11_18_001",
        "info",
        &format!("  schedule: {{timezone: Asia/Tokyo, windows: [\"{tomorrow} 03:00-03:01\"]}}\n"),
    );
    let with = json(&world);
    let window = &with["clients"][0]["window"];
    assert_eq!(window["timezone"], "Asia/Tokyo", "{with}");
    assert!(window["nextOpen"].is_string(), "{with}");
    let text = run(&world, &["status"]);
    assert!(
        text.contains("JST") && text.contains("03:00"),
        "the next opening in the client's time zone: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_filters_by_wave_and_phase_and_refuses_an_unknown_wave() {
    let world = World::new().await;
    world.write_fleet(
        &common::repo_root().join("migrations"),
        "  waves: [canary, main]\n",
    );
    world.write_client(
        common::fleet::SHA1,
        "2024_11_18_001",
        "info",
        "  wave: canary\n",
    );
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    let clients = |args: &[&str]| -> usize {
        let mut all = vec!["status", "--format", "json"];
        all.extend_from_slice(args);
        let value: serde_json::Value = serde_json::from_str(&run(&world, &all)).expect("json");
        value["clients"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(clients(&["--wave", "canary"]), 1);
    assert_eq!(clients(&["--wave", "main"]), 0);
    assert_eq!(clients(&["--phase", "pending"]), 1);
    assert_eq!(clients(&["--phase", "failed"]), 0);
    let unknown = world.steward(&["status", "--wave", "nope"]);
    assert_exit(&unknown, 1);
    assert!(
        common::stderr(&unknown).contains("canary, main"),
        "{}",
        common::stderr(&unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_change_in_json_has_a_time_an_outcome_and_a_summary() {
    let world = World::new().await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    assert_exit(&world.steward(&["apply", "shop", "--yes"]), 0);
    let value: serde_json::Value =
        serde_json::from_str(&run(&world, &["status", "--format", "json"])).expect("json");
    let change = &value["clients"][0]["lastChange"];
    assert!(
        chrono::DateTime::parse_from_rfc3339(change["at"].as_str().unwrap_or_default()).is_ok(),
        "{change}"
    );
    assert_eq!(change["outcome"], "completed", "{change}");
    assert!(
        change["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("applied plan ")),
        "{change}"
    );
    assert_eq!(value["counts"]["Converged"], 1, "{value}");
}

#[test]
fn the_status_table_fits_a_narrow_terminal() {
    // `$COLUMNS` stands in for the terminal's width; `output::table` is what `status`,
    // `history` and the summaries use.
    let rows = vec![vec![
        "shop".to_owned(),
        "Holding".to_owned(),
        "outside the maintenance window; next opens 2026-12-05 02:00 UTC".to_owned(),
    ]];
    let text =
        steward::output::table::render_width(&["CLIENT", "PHASE", "REASON"], &rows, Some(50));
    assert!(text.lines().all(|l| l.chars().count() <= 50), "{text}");
}
