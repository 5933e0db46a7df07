//! Update communication to the clients themselves (the guide's "Update communication"):
//! each client's contacts get `scheduled`, `before-update`, `after-update` and `failure`
//! in plain words by webhook and by email (through an in-process SMTP server), each
//! exactly once whether `steward apply` or the daemon sent it, and never a secret.

mod common;

use std::fs;
use std::process::Output;

use chrono::Timelike;
use common::fleet::{FINGERPRINT_KEY, SHA1, SHA2, STRIPE, TOKEN, World};
use common::hooks::Receiver;
use common::smtp::SmtpServer;
use common::{assert_exit, copy_dir, repo_root, stderr, stdout};

const SHA3: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const SMTP_PASSWORD: &str = "smtp-pass-7d41";
const NEW_SCHEMA: &str = "2025_02_01_001";

/// The fleet's channels and the shop's contacts, wired to the receivers of one test.
struct Channels {
    operators: Receiver,
    client: Receiver,
    smtp: SmtpServer,
}

impl Channels {
    async fn start() -> Channels {
        Channels {
            operators: Receiver::start(0).await,
            client: Receiver::start(0).await,
            smtp: SmtpServer::start().await,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TEST_HOOK_URL", self.operators.url.clone()),
            ("TEST_CLIENT_HOOK_URL", self.client.url.clone()),
            ("TEST_SMTP_URL", self.smtp.url("ops", SMTP_PASSWORD)),
        ]
    }

    /// Subjects of the mails that reached the shop's address, in order.
    fn subjects(&self) -> Vec<String> {
        self.smtp
            .mails()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.contains("it@shop.example")))
            .map(|m| m.subject())
            .collect()
    }

    /// Neither a secret nor an operator-only detail reached a client or an operator.
    fn assert_no_secret(&self) {
        let mut all = serde_json::to_string(&self.operators.received()).expect("json");
        all.push_str(&serde_json::to_string(&self.client.received()).expect("json"));
        for mail in self.smtp.mails() {
            all.push_str(&mail.data);
        }
        for secret in [STRIPE, TOKEN, FINGERPRINT_KEY, SMTP_PASSWORD] {
            assert!(!all.contains(secret), "a secret reached a message");
        }
        for message in self.client.received() {
            assert!(
                message["steward"]["plan"].is_null() && message["steward"]["revision"].is_null(),
                "clients get no plan hashes: {message}"
            );
        }
    }
}

/// The repository's migrations plus one whose header declares downtime and a user action.
fn migrations_with_impact(world: &World) -> std::path::PathBuf {
    let dir = world.path().join("migrations");
    copy_dir(&repo_root().join("migrations"), &dir);
    fs::write(
        dir.join(format!("{NEW_SCHEMA}_orders.up.sql")),
        "-- Orders get their own table.\n-- steward: downtime\n-- steward: user-action Sign in again after the update\ncreate table orders (id bigint primary key);\n",
    )
    .expect("write migration");
    fs::write(
        dir.join(format!("{NEW_SCHEMA}_orders.down.sql")),
        "drop table orders;\n",
    )
    .expect("write migration");
    dir
}

fn setup_fleet(world: &World) {
    world.write_fleet(
        &migrations_with_impact(world),
        "  notify:\n    webhooks: [{url: {env: TEST_HOOK_URL}}]\n    smtp: {server: {env: TEST_SMTP_URL}, from: \"Ops <ops@example.com>\"}\n",
    );
    write_shop(world, SHA1, "2024_11_18_001", false);
}

/// The shop's manifest with its contacts, and a window that is closed now when asked.
fn write_shop(world: &World, sha: &str, schema: &str, window_closed: bool) {
    let mut extra = "  notify:\n    webhooks: [{url: {env: TEST_CLIENT_HOOK_URL}}]\n    email: [it@shop.example]\n    notes: Exports pause during updates.\n".to_owned();
    if window_closed {
        // Opens three hours from now, whatever the time of the run.
        let hour = (chrono::Utc::now() + chrono::Duration::hours(3)).hour();
        extra.push_str(&format!(
            "  schedule: {{timezone: Europe/Berlin, windows: [\"daily {hour:02}:00-{hour:02}:30\"]}}\n"
        ));
    }
    world.write_client(sha, schema, "info", &extra);
}

fn run(world: &World, channels: &Channels, args: &[&str]) -> Output {
    let mut command = world.command(args);
    for (key, value) in channels.env() {
        command.env(key, value);
    }
    let output = command.output().expect("run steward");
    let printed = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        !printed.contains(SMTP_PASSWORD),
        "SMTP credentials are never printed"
    );
    output
}

fn text_of(receiver: &Receiver, event: &str) -> String {
    receiver
        .received()
        .iter()
        .find(|m| m["steward"]["event"] == event)
        .and_then(|m| m["text"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no {event} in {:?}", receiver.received()))
}

fn assert_scheduled_in_plain_words(channels: &Channels) {
    let text = text_of(&channels.client, "scheduled");
    for expected in [
        "(Europe/Berlin)",
        "Downtime: yes",
        "Breaking change: no",
        "Action from users: Sign in again after the update",
        "Notes: Exports pause during updates.",
        &format!("a database update (to version {NEW_SCHEMA})"),
    ] {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }
    let scheduled = channels
        .client
        .received()
        .into_iter()
        .find(|m| m["steward"]["event"] == "scheduled")
        .expect("scheduled");
    assert_eq!(scheduled["steward"]["summary"]["schema"]["to"], NEW_SCHEMA);
    assert_eq!(scheduled["steward"]["summary"]["downtime"], true);
    let operators = text_of(&channels.operators, "scheduled");
    assert!(operators.contains("`shop` waits for"), "{operators}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_at_the_terminal_tells_the_client_by_email_and_webhook_once_per_event() {
    let channels = Channels::start().await;
    let world = World::new().await;
    setup_fleet(&world);
    assert_exit(&run(&world, &channels, &["adopt", "shop"]), 0);
    assert_exit(&run(&world, &channels, &["backup", "shop"]), 0);
    assert_exit(&run(&world, &channels, &["apply", "shop", "--yes"]), 0);

    // A change that must wait for the window: announced once, however often it is tried.
    write_shop(&world, SHA2, NEW_SCHEMA, true);
    for _ in 0..2 {
        assert_exit(&run(&world, &channels, &["apply", "shop", "--yes"]), 3);
    }
    assert_exit(
        &run(
            &world,
            &channels,
            &["apply", "shop", "--yes", "--ignore-window"],
        ),
        0,
    );
    // A release whose deployment fails: the failure is told once, and the retry held by
    // it sends nothing.
    world.emulator.update_faults(|f| {
        f.fail_shas.insert(SHA3.to_owned());
    });
    write_shop(&world, SHA3, NEW_SCHEMA, false);
    assert_exit(&run(&world, &channels, &["apply", "shop", "--yes"]), 1);
    assert_exit(&run(&world, &channels, &["apply", "shop", "--yes"]), 3);
    // `retry` makes a new attempt of the same release: told again.
    assert_exit(&run(&world, &channels, &["retry", "shop"]), 0);
    assert_exit(&run(&world, &channels, &["apply", "shop", "--yes"]), 1);
    // The daemon finds the release Failed: the CLI told that failure, so it is not told again.
    assert_exit(&run(&world, &channels, &["run", "--once"]), 1);

    let expected = [
        "before-update",
        "after-update",
        "scheduled",
        "before-update",
        "after-update",
        "before-update",
        "failure",
        "before-update",
        "failure",
    ];
    assert_eq!(channels.client.events_for("shop"), expected);
    assert_eq!(channels.operators.events_for("shop"), expected);
    assert_eq!(
        channels.subjects(),
        [
            "shop: update starting",
            "shop: update complete",
            "shop: update scheduled",
            "shop: update starting",
            "shop: update complete",
            "shop: update starting",
            "shop: update not completed",
            "shop: update starting",
            "shop: update not completed",
        ]
    );
    assert_scheduled_in_plain_words(&channels);
    let mail = channels.smtp.mails().remove(0);
    assert!(mail.from.contains("ops@example.com"), "{mail:?}");
    assert!(
        mail.data.contains("The update of shop starts now.")
            && mail.data.contains("filename=\"update.json\""),
        "the text, and the payload for tools: {}",
        mail.data
    );
    assert!(
        !channels.smtp.auths().is_empty(),
        "the credentials of the secret ref were used"
    );
    let mut conn = world.db.connect().await;
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM steward_notifications ORDER BY key")
            .fetch_all(&mut conn)
            .await
            .expect("the keys are recorded in the client's database");
    assert!(
        keys.iter().any(|k| k.starts_with("shop:scheduled:")),
        "{keys:?}"
    );
    let failure = text_of(&channels.client, "failure");
    assert!(
        failure.contains("could not be completed") && !failure.contains("deploy"),
        "the client reads no internals: {failure}"
    );
    channels.assert_no_secret();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_the_client_once_per_event_and_a_second_pass_sends_nothing_new() {
    let channels = Channels::start().await;
    let world = World::new().await;
    setup_fleet(&world);
    assert_exit(&run(&world, &channels, &["adopt", "shop"]), 0);
    assert_exit(&run(&world, &channels, &["backup", "shop"]), 0);

    write_shop(&world, SHA2, NEW_SCHEMA, true);
    for _ in 0..2 {
        assert_exit(&run(&world, &channels, &["run", "--once"]), 2);
    }
    assert_eq!(channels.client.events_for("shop"), ["scheduled"]);

    write_shop(&world, SHA2, NEW_SCHEMA, false);
    for _ in 0..2 {
        assert_exit(&run(&world, &channels, &["run", "--once"]), 0);
    }
    // A release that fails only under production traffic: promoted, then undone.
    world.emulator.update_faults(|f| {
        f.unhealthy_in_production.insert(SHA3.to_owned());
    });
    write_shop(&world, SHA3, NEW_SCHEMA, false);
    for _ in 0..2 {
        assert_exit(&run(&world, &channels, &["run", "--once"]), 1);
    }

    let expected = [
        "scheduled",
        "before-update",
        "after-update",
        "before-update",
        "rollback",
        "failure",
    ];
    assert_eq!(channels.client.events_for("shop"), expected);
    assert_eq!(channels.operators.events_for("shop"), expected);
    assert_eq!(
        channels.subjects().len(),
        expected.len(),
        "{:?}",
        channels.subjects()
    );
    assert_eq!(
        world.production_sha().as_deref(),
        Some(SHA2),
        "the failed release was undone"
    );
    let rollback = text_of(&channels.client, "rollback");
    assert!(rollback.contains("was undone"), "{rollback}");
    assert_scheduled_in_plain_words(&channels);
    channels.assert_no_secret();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_mail_server_never_blocks_the_rollout() {
    let channels = Channels::start().await;
    let world = World::new().await;
    setup_fleet(&world);
    // A port nobody listens on: every delivery is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let dead = format!("smtp://ops:{SMTP_PASSWORD}@127.0.0.1:{port}");
    let mut apply = world.command(&["adopt", "shop"]);
    apply.env("TEST_SMTP_URL", &dead);
    assert_exit(&apply.output().expect("adopt"), 0);
    let mut apply = world.command(&["apply", "shop", "--yes"]);
    for (key, value) in channels.env() {
        apply.env(key, value);
    }
    apply.env("TEST_SMTP_URL", &dead);
    let output = apply.output().expect("apply");
    assert_exit(&output, 0);
    assert!(
        !stderr(&output).contains(SMTP_PASSWORD),
        "{}",
        stderr(&output)
    );
    assert_eq!(world.production_sha().as_deref(), Some(SHA1));
    assert_eq!(
        channels.client.events_for("shop"),
        ["before-update", "after-update"],
        "the webhooks are told all the same"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_before_any_update_is_told_to_the_operators_and_not_the_client() {
    let channels = Channels::start().await;
    let world = World::new().await;
    setup_fleet(&world);
    let mut command = world.command(&["run", "--once"]);
    for (key, value) in channels.env() {
        command.env(key, value);
    }
    // Nobody listens there: the pass cannot even look at the database.
    command.env(
        "TEST_SHOP_DATABASE_URL",
        "postgres://postgres@127.0.0.1:1/nowhere",
    );
    let output = command.output().expect("run");
    assert_exit(&output, 1);
    assert_eq!(channels.operators.events_for("shop"), ["failure"]);
    assert!(
        channels.client.received().is_empty(),
        "{:?}",
        channels.client.received()
    );
    assert!(
        channels.smtp.mails().is_empty(),
        "{:?}",
        channels.smtp.mails()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_without_destinations_records_nothing_in_the_clients_database() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["backup", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    let mut conn = world.db.connect().await;
    let table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('steward_notifications')::text")
            .fetch_one(&mut conn)
            .await
            .expect("query");
    assert_eq!(table, None, "nobody to tell, nothing recorded");
}
