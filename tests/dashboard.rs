//! The dashboard in a real headless Chromium (Debian's `chromium`, installed by
//! `scripts/test`): the fleet page lists every client with its code and schema versions,
//! a client page shows its history, a change appears without a reload, names and errors
//! stay text, and no secret reaches any page.
//!
//! `STEWARD_SCREENSHOTS=docs cargo test --test dashboard` also writes the screenshots
//! the README shows.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::browser::{Browser, Tab};
use common::fleet::{FINGERPRINT_KEY, SHA1, SHA2, STRIPE, TOKEN, World};
use common::process::{first_pass_done, free_addr, terminate};
use common::{TestDb, assert_exit};

const SHORT1: &str = "a1a1a1a1a1a1";
const SHORT2: &str = "b2b2b2b2b2b2";

/// A second client beside the world's `shop`, with its own database and project.
struct Corner {
    db: TestDb,
}

impl Corner {
    async fn add(world: &World, project: &str) -> Corner {
        let db = TestDb::create().await;
        world.emulator.create_project(project, None);
        world.emulator.set_auto_assign(project, false);
        std::fs::write(
            world.path().join("clients/corner.yaml"),
            format!(
                "apiVersion: steward/v1\nkind: Client\nmetadata: {{name: corner}}\nspec:\n  wave: main\n  code: {{project: \"{project}\", version: {SHA1}}}\n  database:\n    url: {{env: TEST_CORNER_DATABASE_URL}}\n    schemaVersion: 2024_11_04_001\n  env:\n    LOG_LEVEL: warn\n  schedule: {{timezone: Europe/Berlin, windows: [\"daily 00:00-23:59\"]}}\n  policy:\n    apply: auto\n    bake: 300ms\n    health: {{path: /api/health, timeout: 2s}}\n"
            ),
        )
        .expect("write corner");
        Corner { db }
    }
}

/// A fleet in two waves: `shop` (canary) and `corner` (main), both adopted.
async fn two_clients(corner_project: &str) -> (World, Corner) {
    let world = World::new().await;
    world.write_fleet(
        &common::repo_root().join("migrations"),
        "  waves: [canary, main]\n",
    );
    world.write_client(SHA1, "2024_11_18_001", "info", "  wave: canary\n");
    let corner = Corner::add(&world, corner_project).await;
    assert_exit(&world.steward(&["adopt", "shop"]), 0);
    let adopt = world
        .command(&["adopt", "corner"])
        .env("TEST_CORNER_DATABASE_URL", &corner.db.url)
        .output()
        .expect("adopt corner");
    assert_exit(&adopt, 0);
    (world, corner)
}

/// The daemon with its dashboard, after its first pass.
async fn daemon(world: &World, corner: &Corner) -> (Child, String) {
    let addr = free_addr();
    let child = world
        .command(&["run", "--listen", &addr, "--interval", "1s"])
        .env("TEST_CORNER_DATABASE_URL", &corner.db.url)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the daemon");
    first_pass_done(&addr).await;
    (child, addr)
}

/// Run browser work off the async runtime's worker (it blocks on the pipe).
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [STRIPE, TOKEN, FINGERPRINT_KEY] {
        assert!(
            !text.contains(secret),
            "a secret's bytes are in {what}:\n{text}"
        );
    }
}

fn screenshot(browser: &mut Browser, tab: &Tab, file: &str) {
    if let Ok(dir) = std::env::var("STEWARD_SCREENSHOTS") {
        let dir = common::repo_root().join(dir);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(file), browser.screenshot(tab)).expect("write screenshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_page_lists_every_client_with_its_code_and_schema_version() {
    let (world, corner) = two_clients("corner-web").await;
    let (child, addr) = daemon(&world, &corner).await;
    blocking(|| {
        let mut browser = Browser::launch();
        let tab = browser.open(&format!("http://{addr}/"));
        let text = browser.wait_for(
            &tab,
            "both clients converged",
            Duration::from_secs(60),
            |t| {
                t.contains("shop")
                    && t.contains("corner")
                    && t.contains("2 of 2 clients")
                    && !t.contains("not looked at yet")
            },
        );
        let rows = |browser: &mut Browser, client: &str| {
            browser
                .eval(
                    &tab,
                    &format!("document.querySelector('tr[data-client={client}]').innerText"),
                )
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let shop = rows(&mut browser, "shop");
        assert!(
            shop.contains(SHORT1) && shop.contains("2024_11_18_001"),
            "{shop}"
        );
        let corner_row = rows(&mut browser, "corner");
        assert!(
            corner_row.contains(SHORT1) && corner_row.contains("2024_11_04_001"),
            "{corner_row}"
        );
        assert!(
            text.contains("canary") && text.contains("1/1 converged"),
            "{text}"
        );
        screenshot(&mut browser, &tab, "dashboard-fleet.png");
        assert_no_secret("the fleet page", &browser.html(&tab));
    });
    for path in [
        "/api/fleet",
        "/api/clients/shop",
        "/api/clients/corner",
        "/status",
    ] {
        let body = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect(path)
            .text()
            .await
            .expect("body");
        assert_no_secret(path, &body);
    }
    assert_eq!(terminate(child).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_page_shows_desired_beside_live_and_its_history() {
    let (world, corner) = two_clients("corner-web").await;
    let (child, addr) = daemon(&world, &corner).await;
    blocking(|| {
        let mut browser = Browser::launch();
        let tab = browser.open(&format!("http://{addr}/clients/shop"));
        let text = browser.wait_for(
            &tab,
            "the apply in the history and live caught up with desired",
            Duration::from_secs(60),
            // The history is written as the apply ends; the live column follows at the
            // next look, so wait for both rather than catch the page in between.
            |t| t.contains("apply completed") && t.contains("✓ same"),
        );
        assert!(
            text.contains("promote succeeded"),
            "each step is on the timeline: {text}"
        );
        assert!(text.contains("by steward daemon"), "{text}");
        assert!(
            text.contains("STRIPE_SECRET_KEY") && text.contains("(not shown)"),
            "{text}"
        );
        assert!(text.contains("✓ same"), "live matches desired: {text}");
        assert!(text.contains("converged: nothing to do"), "{text}");
        assert!(
            text.contains("policy.apply") && text.contains("auto"),
            "{text}"
        );
        assert_no_secret("the client page", &browser.html(&tab));
        screenshot(&mut browser, &tab, "dashboard-client.png");

        let corner_tab = browser.open(&format!("http://{addr}/clients/corner"));
        let corner_text = browser.wait_for(
            &corner_tab,
            "corner's window",
            Duration::from_secs(60),
            |t| t.contains("Europe/Berlin"),
        );
        assert!(corner_text.contains("daily 00:00-23:59"), "{corner_text}");
    });
    assert_eq!(terminate(child).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_the_fleet_shows_up_without_a_reload() {
    let (world, corner) = two_clients("corner-web").await;
    let (child, addr) = daemon(&world, &corner).await;
    let mut browser = blocking(Browser::launch);
    let tab = blocking(|| browser.open(&format!("http://{addr}/")));
    let live_code =
        "document.querySelector('tr[data-client=shop] td:nth-child(4)')?.innerText ?? ''";
    blocking(|| {
        browser.wait_for(
            &tab,
            "shop on the first commit",
            Duration::from_secs(60),
            |t| t.contains(SHORT1),
        );
        // A mark that a reload would wipe out.
        browser.eval(&tab, "window.stillTheSamePage = true");
    });
    world.write_client(SHA2, "2024_11_18_001", "info", "  wave: canary\n");
    blocking(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let code = browser.eval(&tab, live_code);
            if code.as_str().is_some_and(|c| c.starts_with(SHORT2)) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited 90 s for shop's live code to become {SHORT2}; it shows {code}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_eq!(
            browser.eval(&tab, "window.stillTheSamePage === true"),
            serde_json::json!(true),
            "the page was not reloaded"
        );
    });
    drop(browser);
    assert_eq!(terminate(child).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_errors_from_the_fleet_are_shown_as_text_never_as_markup() {
    // A project name with markup in it: its deployment host is no domain name, so the
    // health check fails (not retried without end) and the failure names it.
    let (world, corner) = two_clients("<img id=injected src=x>").await;
    let (child, addr) = daemon(&world, &corner).await;
    blocking(|| {
        let mut browser = Browser::launch();
        let tab = browser.open(&format!("http://{addr}/clients/corner"));
        let text = browser.wait_for(&tab, "the project's name", Duration::from_secs(60), |t| {
            t.contains("<img id=injected src=x>")
        });
        // Failed, not "retrying": no later try can request that URL.
        assert!(text.contains("Error") || text.contains("Failed"), "{text}");
        assert!(!text.contains("retrying in"), "{text}");
        assert_eq!(
            browser.eval(&tab, "document.getElementById('injected') === null"),
            serde_json::json!(true),
            "the name became an element"
        );
        let fleet = browser.open(&format!("http://{addr}/"));
        browser.wait_for(
            &fleet,
            "corner needing attention",
            Duration::from_secs(60),
            |t| t.contains("corner"),
        );
        assert_eq!(
            browser.eval(&fleet, "document.querySelector('tbody tr').dataset.client"),
            serde_json::json!("corner"),
            "clients needing attention come first"
        );
        assert_eq!(
            browser.eval(&fleet, "document.getElementById('injected') === null"),
            serde_json::json!(true)
        );
    });
    assert!(terminate(child).await.code().is_some());
}
