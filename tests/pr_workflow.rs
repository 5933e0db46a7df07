//! The PR workflow: `plan --changed-since` plans only what a change touches, tags resolve
//! through the GitHub emulator, and the daemon's GitHub webhook is signed and triggers a
//! resync.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::fleet::{SHA2, World};
use common::process::{first_pass_done, free_addr, git, loops_total, terminate};
use common::{copy_dir, repo_root, stderr, stdout};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use steward::emulator::github::{GithubEmulatorConfig, RunningEmulator};
use steward::manifest::Fleet;
use steward::manifest::changed::changed_since;

/// A fleet repository like the example one: `fleet/` and `migrations/`, one commit.
fn fleet_repo() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_root().join("fleet"), &root.path().join("fleet"));
    copy_dir(
        &repo_root().join("migrations"),
        &root.path().join("migrations"),
    );
    git(root.path(), &["init", "-q", "-b", "main"]);
    git(root.path(), &["add", "-A"]);
    git(root.path(), &["commit", "-qm", "fleet"]);
    root
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    fs::write(path, text.replacen(from, to, 1)).expect("write");
}

#[test]
fn a_changed_manifest_and_an_inherited_default_select_exactly_the_clients_they_touch() {
    let repo = fleet_repo();
    let fleet_dir = repo.path().join("fleet");
    edit(
        &fleet_dir.join("clients/acme.yaml"),
        "FEATURE_INVOICE_DUE_DATES: \"true\"",
        "FEATURE_INVOICE_DUE_DATES: \"false\"",
    );
    // globex sets its own LOG_LEVEL, so only acme and initech inherit this default.
    edit(
        &fleet_dir.join("fleet.yaml"),
        "LOG_LEVEL: info",
        "LOG_LEVEL: warn",
    );
    let fleet = Fleet::load(&fleet_dir).expect("fleet");
    let changes = changed_since(&fleet, "HEAD").expect("changes");
    let planned: Vec<&str> = changes.clients.keys().map(String::as_str).collect();
    assert_eq!(planned, ["acme", "initech"], "{changes:#?}");
    assert!(changes.clients["acme"].contains(&"manifest changed".to_owned()));
    assert_eq!(
        changes.clients["initech"],
        ["inherits changed fleet.yaml defaults"]
    );
    assert!(changes.edited_migrations.is_empty());
}

#[test]
fn a_changed_verify_file_selects_clients_whose_target_reaches_it_and_an_edited_applied_migration_is_an_error()
 {
    let repo = fleet_repo();
    let migrations = repo.path().join("migrations");
    // 2024_12_18_001 is at or below the targets of acme and globex, above initech's.
    fs::write(
        migrations.join("2024_12_18_001_invoice_due_date.verify.sql"),
        "select true;\n",
    )
    .expect("write");
    let fleet = Fleet::load(&repo.path().join("fleet")).expect("fleet");
    let changes = changed_since(&fleet, "HEAD").expect("changes");
    let planned: Vec<&str> = changes.clients.keys().map(String::as_str).collect();
    assert_eq!(planned, ["acme", "globex"], "{changes:#?}");
    assert!(
        changes.edited_migrations.is_empty(),
        "a verify file may change"
    );

    let up = migrations.join("2024_11_04_001_accounts.up.sql");
    let text = fs::read_to_string(&up).expect("read");
    fs::write(&up, format!("{text}\n-- tweaked\n")).expect("write");
    let changes = changed_since(&fleet, "HEAD").expect("changes");
    assert_eq!(
        changes.edited_migrations,
        ["migrations/2024_11_04_001_accounts.up.sql"]
    );
    let fleet_dir = repo.path().join("fleet");
    let out = common::steward(
        &[
            "plan",
            "--changed-since",
            "HEAD",
            "--fleet",
            &fleet_dir.display().to_string(),
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "an edited migration fails the PR plan"
    );
    assert!(
        stdout(&out).contains("2024_11_04_001_accounts.up.sql")
            && stdout(&out).contains("applied migrations are immutable"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn deleted_and_renamed_manifests_are_reported() {
    let repo = fleet_repo();
    let clients = repo.path().join("fleet/clients");
    git(repo.path(), &["rm", "-q", "fleet/clients/globex.yaml"]);
    let text = fs::read_to_string(clients.join("initech.yaml")).expect("read");
    git(
        repo.path(),
        &[
            "mv",
            "fleet/clients/initech.yaml",
            "fleet/clients/initrode.yaml",
        ],
    );
    fs::write(
        clients.join("initrode.yaml"),
        text.replace("name: initech", "name: initrode"),
    )
    .expect("write");
    git(repo.path(), &["commit", "-qam", "rename and delete"]);
    git(repo.path(), &["branch", "-q", "feature"]);
    let fleet = Fleet::load(&repo.path().join("fleet")).expect("fleet");
    let changes = changed_since(&fleet, "HEAD~1").expect("changes");
    assert_eq!(changes.deleted, ["globex"]);
    assert_eq!(
        changes.renamed,
        [("initech".to_owned(), "initrode".to_owned())]
    );
    assert_eq!(
        changes.clients.keys().collect::<Vec<_>>(),
        ["initrode"],
        "{changes:#?}"
    );
    let notes = changes.notes().join("\n");
    assert!(notes.contains("`globex`: manifest deleted") && notes.contains("`initrode`"));

    let fleet = Fleet::load(&repo.path().join("fleet")).expect("fleet");
    let err = changed_since(&fleet, "no-such-branch").expect_err("unknown rev");
    assert!(
        err.to_string().contains("`no-such-branch` is not a commit"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_changed_since_plans_only_the_client_whose_manifest_changed() {
    let world = World::new().await;
    git(world.path(), &["init", "-q"]);
    git(world.path(), &["add", "-A"]);
    git(world.path(), &["commit", "-qm", "fleet"]);
    world.setup(&["adopt", "shop"]);

    let quiet = world.steward(&["plan", "--changed-since", "HEAD", "--format", "json"]);
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    let json: serde_json::Value = serde_json::from_slice(&quiet.stdout).expect("json");
    assert_eq!(json["clients"].as_array().map(Vec::len), Some(0), "{json}");

    world.write_client(common::fleet::SHA1, "2024_11_18_001", "debug", "");
    let touched = world.steward(&["plan", "--changed-since", "HEAD", "--format", "json"]);
    world.assert_no_secret(&touched);
    assert_eq!(touched.status.code(), Some(0), "{}", stderr(&touched));
    let json: serde_json::Value = serde_json::from_slice(&touched.stdout).expect("json");
    assert_eq!(json["clients"][0]["client"], "shop", "{json}");
    assert!(
        json["notes"]
            .to_string()
            .contains("client `shop` planned: manifest changed"),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_resolves_through_github_into_the_plan_and_a_missing_tag_is_named() {
    let github = RunningEmulator::start(GithubEmulatorConfig::new("ghp_tagsTestToken"))
        .await
        .expect("github emulator");
    github.seed_tag("example-org/web-app", "v2.0.0", SHA2, true);
    let world = World::new().await;
    world.write_fleet(
        &repo_root().join("migrations"),
        &format!(
            "  github: {{repo: example-org/web-app, apiUrl: \"{}\", token: {{env: TEST_GITHUB_TOKEN}}}}\n",
            github.base_url
        ),
    );
    world.write_client("v2.0.0", "2024_11_18_001", "info", "");
    world.setup(&["adopt", "shop"]);
    let plan = |world: &World| {
        world
            .command(&["plan"])
            .env("TEST_GITHUB_TOKEN", "ghp_tagsTestToken")
            .output()
            .expect("plan")
    };
    let out = plan(&world);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("v2.0.0 ({})", &SHA2[..12])),
        "the plan shows the tag and its commit:\n{}",
        stdout(&out)
    );

    world.write_client("v9.9.9", "2024_11_18_001", "info", "");
    let out = plan(&world);
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("v9.9.9") && text.contains("example-org/web-app"),
        "a missing tag is named: {text}"
    );
    assert!(!text.contains("ghp_tagsTestToken"));
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_webhook_refuses_bad_signatures_and_a_signed_push_triggers_a_resync() {
    const SECRET: &str = "webhook-secret-for-tests";
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    let addr = free_addr();
    let child = world
        .command(&["run", "--listen", &addr, "--interval", "600s"])
        .env("STEWARD_GITHUB_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let http = reqwest::Client::new();
    let first = first_pass_done(&addr).await;

    let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"example-org/fleet","default_branch":"main"}}"#;
    let post = |signature: Option<String>| {
        let mut request = http
            .post(format!("http://{addr}/webhooks/github"))
            .header("x-github-event", "push")
            .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send()
    };
    assert_eq!(post(None).await.expect("post").status(), 401);
    assert_eq!(
        post(Some(sign("wrong secret", body)))
            .await
            .expect("post")
            .status(),
        401
    );
    assert_eq!(
        loops_total(&addr).await,
        Some(first),
        "a refused webhook triggers nothing"
    );
    assert_eq!(
        post(Some(sign(SECRET, body))).await.expect("post").status(),
        202
    );
    let mut resynced = false;
    for _ in 0..100 {
        if loops_total(&addr).await.is_some_and(|n| n > first) {
            resynced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(child).await;
    assert!(
        resynced,
        "a signed push to the default branch resyncs at once"
    );
}
