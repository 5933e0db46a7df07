//! The GitHub side (sticky plan comment, commit status, tags, App auth, rate limits),
//! through steward's octocrab client and the `steward comment` binary, against the GitHub
//! emulator over real HTTP.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{STRIPE, World};
use common::{assert_exit, stderr, stdout};
use serde_json::{Value, json};
use steward::emulator::github::{Faults, GithubEmulatorConfig, LoggedRequest, RunningEmulator};
use steward::github::{GithubAuth, GithubClient, GithubError, Repo, StickyOutcome};
use steward::plan::render::COMMENT_MARKER;
use steward::secret::Secret;

const TOKEN: &str = "ghp_emulatorTestToken0123456789abcdef";
const LOGIN: &str = "steward-ci";
const REPO: &str = "example-org/web-app";
const SHA: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 77;

async fn emulator() -> RunningEmulator {
    let mut config = GithubEmulatorConfig::new(TOKEN);
    config.login = LOGIN.to_owned();
    config.app_id = Some(APP_ID);
    config.app_public_key_pem = Some(fixture("app-test-key.pub.pem"));
    config.installation_id = Some(INSTALLATION);
    RunningEmulator::start(config).await.expect("emulator")
}

fn fixture(name: &str) -> String {
    let path = common::repo_root().join("tests/fixtures/github").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn client(emulator: &RunningEmulator) -> GithubClient {
    GithubClient::new(&emulator.base_url, &GithubAuth::token(TOKEN)).expect("client")
}

fn app_auth(app_id: u64) -> GithubAuth {
    GithubAuth::App {
        app_id,
        private_key_pem: Secret::new(fixture("app-test-key.pem")),
        installation_id: INSTALLATION,
    }
}

fn repo() -> Repo {
    REPO.parse().expect("repo")
}

fn body(text: &str) -> String {
    format!("{COMMENT_MARKER}\n### steward plan\n\n{text}\n")
}

fn writes(log: &[LoggedRequest]) -> Vec<&LoggedRequest> {
    log.iter()
        .filter(|r| r.method != "GET" && r.path.contains("/repos/"))
        .collect()
}

/// A plan document in the shape `steward plan --format json` writes.
fn plan_json(outcome: &str, summary: &str) -> String {
    json!({
        "version": 1,
        "outcome": outcome,
        "summary": summary,
        "revision": null,
        "clients": [],
        "errors": [],
        "markdown": format!("{COMMENT_MARKER}\n### steward plan\n\n{summary}\n"),
    })
    .to_string()
}

/// Run `steward comment` against the emulator, with only the credentials given here.
fn steward_comment(
    emulator: &RunningEmulator,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    command
        .arg("comment")
        .args(["--repo", REPO, "--api-url", &emulator.base_url])
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    for var in [
        "GITHUB_TOKEN",
        "GITHUB_API_URL",
        "GITHUB_APP_ID",
        "GITHUB_APP_PRIVATE_KEY",
        "GITHUB_INSTALLATION_ID",
        "STEWARD_FLEET",
    ] {
        command.env_remove(var);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run steward");
    if let Some(text) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("steward output")
}

fn write_plan(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write plan");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pr_planned_twice_leaves_one_comment_updated_in_place_with_a_patch() {
    let emulator = emulator().await;
    let github = client(&emulator);
    let first = github
        .upsert_sticky_comment(&repo(), 12, COMMENT_MARKER, &body("1 with changes"))
        .await
        .expect("first");
    let StickyOutcome::Created(id) = first else {
        panic!("expected a new comment, got {first:?}");
    };
    let second = github
        .upsert_sticky_comment(&repo(), 12, COMMENT_MARKER, &body("2 with changes"))
        .await
        .expect("second");
    assert_eq!(second, StickyOutcome::Updated(id));

    let comments = emulator.comments(REPO, 12);
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert!(comments[0].body.contains("2 with changes"));
    assert_eq!(comments[0].user.login, LOGIN);
    let log = emulator.requests();
    let comment_path = format!("/repos/{REPO}/issues/comments/{id}");
    assert!(
        log.iter()
            .any(|r| r.method == "PATCH" && r.path == comment_path),
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|r| r.method == "POST" && r.path == comment_path),
        "an update must be a PATCH, not octocrab's POST: {log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_plan_makes_no_write() {
    let emulator = emulator().await;
    let github = client(&emulator);
    let created = github
        .upsert_sticky_comment(&repo(), 3, COMMENT_MARKER, &body("all converged"))
        .await
        .expect("create");
    emulator.clear_requests();
    let again = github
        .upsert_sticky_comment(&repo(), 3, COMMENT_MARKER, &body("all converged"))
        .await
        .expect("again");
    assert_eq!(again, StickyOutcome::Unchanged(created.id()));
    let log = emulator.requests();
    assert!(writes(&log).is_empty(), "no write expected: {log:#?}");
    assert!(!log.is_empty(), "it did look at the comments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sticky_comment_is_found_among_120_comments_by_other_users() {
    let emulator = emulator().await;
    for i in 0..120 {
        let who = if i % 2 == 0 {
            "alice"
        } else {
            "dependabot[bot]"
        };
        emulator.seed_comment(REPO, 7, &format!("comment {i}"), who);
    }
    // Someone quoting our marker must not be mistaken for us.
    let quoted = emulator.seed_comment(REPO, 7, &body("quoted by mallory"), "mallory");
    let ours = emulator.seed_comment(REPO, 7, &body("old plan"), LOGIN);
    for i in 0..10 {
        emulator.seed_comment(REPO, 7, &format!("later {i}"), "bob");
    }

    let outcome = client(&emulator)
        .upsert_sticky_comment(&repo(), 7, COMMENT_MARKER, &body("new plan"))
        .await
        .expect("upsert");
    assert_eq!(outcome, StickyOutcome::Updated(ours));

    let comments = emulator.comments(REPO, 7);
    assert_eq!(comments.len(), 132, "nothing created or deleted");
    let by_id = |id| comments.iter().find(|c| c.id == id).expect("comment");
    assert!(by_id(ours).body.contains("new plan"));
    assert!(by_id(quoted).body.contains("quoted by mallory"));
    let pages: Vec<String> = emulator
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/issues/7/comments"))
        .filter_map(|r| r.query.clone())
        .collect();
    assert_eq!(pages.len(), 2, "two pages of 100: {pages:?}");
    assert!(
        pages.iter().all(|q| q.contains("per_page=100")),
        "{pages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_plan_sets_a_failure_status_and_a_clean_plan_sets_success() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blocked = write_plan(
        dir.path(),
        "blocked.json",
        &plan_json(
            "blocked",
            "steward plan: 1 client: 0 converged, 0 with changes, 1 blocked",
        ),
    );
    let out = steward_comment(
        &emulator,
        &["--pr", "21", "--sha", SHA, "--plan", &blocked],
        &[("GITHUB_TOKEN", TOKEN)],
        None,
    );
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("failure"), "{}", stdout(&out));
    let statuses = emulator.statuses(REPO, SHA);
    assert_eq!(statuses.len(), 1, "{statuses:#?}");
    assert_eq!(statuses[0].state, "failure");
    assert_eq!(statuses[0].context, "steward/plan");
    assert!(
        statuses[0]
            .description
            .as_deref()
            .is_some_and(|d| d.contains("1 blocked")),
        "{statuses:#?}"
    );

    let clean = write_plan(
        dir.path(),
        "clean.json",
        &plan_json(
            "clean",
            "steward plan: 1 client: 1 converged, 0 with changes",
        ),
    );
    let out = steward_comment(
        &emulator,
        &["--pr", "21", "--sha", SHA, "--plan", &clean],
        &[("GITHUB_TOKEN", TOKEN)],
        None,
    );
    assert_exit(&out, 0);
    let statuses = emulator.statuses(REPO, SHA);
    assert_eq!(
        statuses.last().map(|s| s.state.as_str()),
        Some("success"),
        "{statuses:#?}"
    );
    let comments = emulator.comments(REPO, 21);
    assert_eq!(
        comments.len(),
        1,
        "the same comment, updated: {comments:#?}"
    );
    assert!(comments[0].body.contains("1 converged"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_environment_reaches_no_comment_body_or_status_description() {
    let world = World::new().await;
    let planned = world.steward(&["plan", "shop", "--format", "json"]);
    let plan = stdout(&planned);
    assert!(
        plan.contains("STRIPE_SECRET_KEY") && plan.contains("\"markdown\""),
        "the plan covers the secret's key: {plan}\n{}",
        stderr(&planned)
    );
    let github = emulator().await;
    let fleet = world.path().display().to_string();
    let out = steward_comment(
        &github,
        &["--pr", "5", "--sha", SHA, "--fleet", &fleet],
        &[
            ("GITHUB_TOKEN", TOKEN),
            ("TEST_STRIPE_KEY", STRIPE),
            ("TEST_VERCEL_TOKEN", common::fleet::TOKEN),
            ("TEST_FINGERPRINT_KEY", common::fleet::FINGERPRINT_KEY),
        ],
        Some(&plan),
    );
    assert_exit(&out, 0);
    world.assert_no_secret(&out);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!printed.contains(TOKEN), "the GitHub token was printed");
    let log = github.requests();
    assert!(
        !writes(&log).is_empty(),
        "a comment and a status were written"
    );
    let sent = serde_json::to_string(&log).expect("log as JSON");
    for secret in [STRIPE, TOKEN, common::fleet::FINGERPRINT_KEY] {
        assert!(!sent.contains(secret), "a secret reached GitHub: {sent}");
    }
    let comments = github.comments(REPO, 5);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.starts_with(COMMENT_MARKER));
    assert_eq!(github.statuses(REPO, SHA).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_fails_naming_it_and_an_annotated_tag_resolves_to_its_commit() {
    let emulator = emulator().await;
    let light = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
    let annotated = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
    emulator.seed_tag(REPO, "v1.0.0", light, false);
    emulator.seed_tag(REPO, "release/v2.0.0", annotated, true);
    let github = client(&emulator);

    assert_eq!(
        github.resolve_tag(&repo(), "v1.0.0").await.expect("light"),
        light
    );
    assert_eq!(
        github
            .resolve_tag(&repo(), "release/v2.0.0")
            .await
            .expect("annotated"),
        annotated
    );
    let log = emulator.requests();
    assert!(
        log.iter().any(|r| r.path.contains("/git/tags/")),
        "the annotated tag was peeled through its tag object: {log:#?}"
    );

    let err = github
        .resolve_tag(&repo(), "v9.9.9")
        .await
        .expect_err("missing tag");
    assert!(matches!(err, GithubError::TagNotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("v9.9.9") && message.contains(REPO),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_exchanges_its_jwt_for_an_installation_token_and_comments_as_its_bot() {
    let emulator = emulator().await;
    let github = GithubClient::new(&emulator.base_url, &app_auth(APP_ID)).expect("app client");
    let created = github
        .upsert_sticky_comment(&repo(), 9, COMMENT_MARKER, &body("from the app"))
        .await
        .expect("comment as the app");
    let comments = emulator.comments(REPO, 9);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].user.login, "steward[bot]");
    assert_eq!(comments[0].user.kind, "Bot");
    let again = github
        .upsert_sticky_comment(&repo(), 9, COMMENT_MARKER, &body("from the app"))
        .await
        .expect("again");
    assert_eq!(again, StickyOutcome::Unchanged(created.id()));
    let log = emulator.requests();
    let exchanges = log
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path == format!("/app/installations/{INSTALLATION}/access_tokens")
        })
        .count();
    assert_eq!(exchanges, 1, "the installation token is cached: {log:#?}");

    // A JWT for another App id is refused, clearly.
    let wrong = GithubClient::new(&emulator.base_url, &app_auth(1)).expect("client");
    let err = wrong
        .upsert_sticky_comment(&repo(), 9, COMMENT_MARKER, &body("x"))
        .await
        .expect_err("wrong app id");
    assert_eq!(err.status(), Some(401), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_comments_as_a_github_app_from_its_environment() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("app.pem");
    std::fs::write(&key, fixture("app-test-key.pem")).expect("key");
    let app_id = APP_ID.to_string();
    let installation = INSTALLATION.to_string();
    let key = key.display().to_string();
    let out = steward_comment(
        &emulator,
        &["--pr", "4", "--plan", "-"],
        &[
            ("GITHUB_APP_ID", &app_id),
            ("GITHUB_APP_PRIVATE_KEY", &key),
            ("GITHUB_INSTALLATION_ID", &installation),
        ],
        Some(&plan_json(
            "changes",
            "steward plan: 1 client: 0 converged, 1 with changes",
        )),
    );
    assert_exit(&out, 0);
    let comments = emulator.comments(REPO, 4);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].user.login, "steward[bot]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actions_style_token_that_cannot_read_user_still_finds_its_own_comment() {
    let emulator = emulator().await;
    // Mint an installation token, as GitHub Actions hands one out as GITHUB_TOKEN.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/app/installations/{INSTALLATION}/access_tokens",
            emulator.base_url
        ))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("exchange");
    assert_eq!(response.status().as_u16(), 201);
    let minted: Value = response.json().await.expect("token json");
    let token = minted["token"].as_str().expect("token").to_owned();

    let github = GithubClient::new(&emulator.base_url, &GithubAuth::token(&token)).expect("client");
    let created = github
        .upsert_sticky_comment(&repo(), 30, COMMENT_MARKER, &body("plan"))
        .await
        .expect("create");
    let updated = github
        .upsert_sticky_comment(&repo(), 30, COMMENT_MARKER, &body("plan 2"))
        .await
        .expect("update");
    assert_eq!(updated, StickyOutcome::Updated(created.id()));
    assert_eq!(emulator.comments(REPO, 30).len(), 1);
}

fn app_jwt() -> String {
    let now = chrono::Utc::now().timestamp();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(fixture("app-test-key.pem").as_bytes())
        .expect("key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iss": APP_ID, "iat": now - 60, "exp": now + 540}),
        &key,
    )
    .expect("jwt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_with_retry_after_is_waited_out() {
    let emulator = emulator().await;
    emulator.set_faults(Faults {
        rate_limit: 2,
        rate_limit_status: 429,
        retry_after_secs: Some(1),
        reset_in_secs: 1,
        ..Faults::default()
    });
    let started = Instant::now();
    let outcome = client(&emulator)
        .upsert_sticky_comment(&repo(), 8, COMMENT_MARKER, &body("after the storm"))
        .await
        .expect("survives the rate limit");
    assert!(matches!(outcome, StickyOutcome::Created(_)));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited retry-after each time: {:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = emulator.requests().iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..2], &[429, 429], "{statuses:?}");
    assert_eq!(emulator.comments(REPO, 8).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_hourly_rate_limit_is_reported_with_its_reset_time_at_once() {
    let emulator = emulator().await;
    emulator.set_faults(Faults {
        rate_limit: 100,
        rate_limit_status: 403,
        retry_after_secs: None,
        reset_in_secs: 3600,
        ..Faults::default()
    });
    let err = client(&emulator)
        .upsert_sticky_comment(&repo(), 8, COMMENT_MARKER, &body("x"))
        .await
        .expect_err("rate limited");
    let message = err.to_string();
    assert!(
        message.contains("rate limited") && message.contains("resets at"),
        "{message}"
    );
    assert_eq!(emulator.requests().len(), 1, "no hammering");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_fails_with_github_s_401_and_is_never_echoed() {
    let emulator = emulator().await;
    let bad = "ghp_wrongTokenThatMustNotBeEchoed";
    let out = steward_comment(
        &emulator,
        &["--pr", "2"],
        &[("GITHUB_TOKEN", bad)],
        Some(&plan_json("clean", "steward plan: 0 clients")),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("401") && err.contains("Bad credentials"),
        "{err}"
    );
    assert!(!err.contains(bad) && !stdout(&out).contains(bad), "{err}");
    let sent = serde_json::to_string(&emulator.requests()).expect("json");
    assert!(!sent.contains(bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_enterprise_api_path_is_kept_on_every_call() {
    let emulator = emulator().await;
    let api = format!("{}/api/v3/", emulator.base_url);
    let github = GithubClient::new(&api, &app_auth(APP_ID)).expect("client");
    github
        .upsert_sticky_comment(&repo(), 11, COMMENT_MARKER, &body("ghe"))
        .await
        .expect("comment");
    github
        .set_status(
            &repo(),
            SHA,
            steward::github::CommitState::Success,
            &"x".repeat(300),
        )
        .await
        .expect("status");
    let log = emulator.requests();
    assert!(
        log.iter().all(|r| r.path.starts_with("/api/v3/")),
        "{log:#?}"
    );
    let status = &emulator.statuses(REPO, SHA)[0];
    assert_eq!(
        status.description.as_deref().map(|d| d.chars().count()),
        Some(140)
    );
}

/// The emulator itself: GitHub's shapes, status codes and headers, checked with plain
/// HTTP so the client cannot paper over a difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_answers_in_github_s_shapes() {
    let emulator = emulator().await;
    for i in 0..35 {
        emulator.seed_comment(REPO, 1, &format!("c{i}"), "alice");
    }
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", emulator.base_url);
    let get = |path: String| http.get(url(&path)).bearer_auth(TOKEN).send();

    let page1 = get(format!("/repos/{REPO}/issues/1/comments"))
        .await
        .expect("page 1");
    let link = page1.headers()["link"].to_str().expect("link").to_owned();
    assert!(
        link.contains("rel=\"next\"") && link.contains("rel=\"last\""),
        "{link}"
    );
    assert!(
        link.contains(&format!("<{}/repos/", emulator.base_url)),
        "absolute: {link}"
    );
    let items: Vec<Value> = page1.json().await.expect("json");
    assert_eq!(items.len(), 30, "default per_page is 30");
    let ids: Vec<u64> = items.iter().filter_map(|c| c["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending by id");
    let user = &items[0]["user"];
    for field in [
        "avatar_url",
        "url",
        "html_url",
        "followers_url",
        "received_events_url",
    ] {
        let value = user[field].as_str().unwrap_or_default();
        assert!(reqwest::Url::parse(value).is_ok(), "{field}: {value}");
    }
    assert!(
        chrono::DateTime::parse_from_rfc3339(items[0]["created_at"].as_str().unwrap_or("")).is_ok()
    );

    let page2 = get(format!("/repos/{REPO}/issues/1/comments?page=2"))
        .await
        .expect("page 2");
    let link = page2.headers()["link"].to_str().expect("link").to_owned();
    assert!(
        link.contains("rel=\"prev\"")
            && link.contains("rel=\"first\"")
            && !link.contains("rel=\"next\""),
        "{link}"
    );
    assert_eq!(page2.json::<Vec<Value>>().await.expect("json").len(), 5);

    let created = http
        .post(url(&format!("/repos/{REPO}/issues/1/comments")))
        .bearer_auth(TOKEN)
        .json(&json!({"body": "hi"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let location = created.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let id = created.json::<Value>().await.expect("json")["id"]
        .as_u64()
        .expect("id");
    assert!(
        location.ends_with(&format!("/issues/comments/{id}")),
        "{location}"
    );
    // POST as a synonym for PATCH, as octocrab's update_comment uses it.
    let updated = http
        .post(url(&format!("/repos/{REPO}/issues/comments/{id}")))
        .bearer_auth(TOKEN)
        .json(&json!({"body": "edited"}))
        .send()
        .await
        .expect("update");
    assert_eq!(updated.status().as_u16(), 200);
    let deleted = http
        .delete(url(&format!("/repos/{REPO}/issues/comments/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status().as_u16(), 204);

    let missing = get(format!("/repos/{REPO}/git/ref/tags/nope"))
        .await
        .expect("404");
    assert_eq!(missing.status().as_u16(), 404);
    let error: Value = missing.json().await.expect("json error");
    assert_eq!(error["message"], "Not Found");
    assert!(
        error["documentation_url"]
            .as_str()
            .is_some_and(|d| d.starts_with("https://"))
    );

    let unauthorized = http
        .get(url("/user"))
        .bearer_auth("nope")
        .send()
        .await
        .expect("401");
    assert_eq!(unauthorized.status().as_u16(), 401);
    let me: Value = get("/user".to_owned())
        .await
        .expect("user")
        .json()
        .await
        .expect("json");
    assert_eq!(me["login"], LOGIN);

    // octocrab's typed models accept the shapes (its update_comment sends POST).
    let crab = octocrab::Octocrab::builder()
        .base_uri(emulator.base_url.as_str())
        .expect("uri")
        .personal_token(TOKEN.to_owned())
        .build()
        .expect("octocrab");
    let page = crab
        .issues("example-org", "web-app")
        .list_comments(1)
        .per_page(100)
        .send()
        .await
        .expect("typed list");
    assert_eq!(page.items.len(), 35);
    let status = crab
        .repos("example-org", "web-app")
        .create_status(SHA.to_owned(), octocrab::models::StatusState::Pending)
        .send()
        .await
        .expect("typed status");
    assert_eq!(status.context.as_deref(), Some("default"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_too_long_for_a_comment_is_cut_with_a_note_saying_where_the_full_plan_is() {
    let emulator = emulator().await;
    let mut markdown = format!("{COMMENT_MARKER}\n### steward plan\n\n```sql\n");
    while markdown.len() < 100_000 {
        markdown.push_str("ALTER TABLE accounts ADD COLUMN note text;\n");
    }
    markdown.push_str("```\n");
    let plan = json!({
        "version": 1, "outcome": "changes", "summary": "steward plan: 1 client: 1 with changes",
        "revision": null, "clients": [], "errors": [], "markdown": markdown,
    })
    .to_string();
    let out = steward_comment(
        &emulator,
        &[
            "--pr",
            "6",
            "--full-plan-at",
            "the `steward-plan` artifact of this job",
        ],
        &[("GITHUB_TOKEN", TOKEN)],
        Some(&plan),
    );
    assert_exit(&out, 0);
    let comments = emulator.comments(REPO, 6);
    assert_eq!(comments.len(), 1);
    let body = &comments[0].body;
    assert!(body.chars().count() <= 65_536, "{}", body.chars().count());
    assert!(body.starts_with(COMMENT_MARKER));
    assert!(
        body.contains("The full plan is in the `steward-plan` artifact of this job."),
        "{}",
        &body[body.len() - 300..]
    );
}

/// `steward emulate github` as a process: admin endpoints seed comments and tags, inject
/// faults and show the request log, and `steward comment` runs against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulate_github_command_serves_admin_endpoints_for_seeding_faults_and_the_log() {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "emulate",
            "github",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
        ])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .expect("start the emulator");
    let mut line = String::new();
    std::io::BufReader::new(child.0.stderr.take().expect("stderr"))
        .read_line(&mut line)
        .expect("its first line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    let http = reqwest::Client::new();
    let admin = |path: &str| format!("{base}/_emulator/{path}");

    let seeded = http
        .post(admin("comments"))
        .json(&json!({"repo": REPO, "pr": 40, "body": "+1", "login": "alice", "count": 3}))
        .send()
        .await
        .expect("seed comments");
    assert_eq!(seeded.status().as_u16(), 201);
    let tag = http
        .post(admin("tags"))
        .json(&json!({"repo": REPO, "tag": "v3", "sha": SHA, "annotated": true}))
        .send()
        .await
        .expect("seed tag");
    assert_eq!(tag.status().as_u16(), 201);
    let faults = http
        .post(admin("faults"))
        .json(&json!({"rateLimit": 1, "rateLimitStatus": 429, "retryAfterSecs": 1}))
        .send()
        .await
        .expect("faults");
    assert_eq!(faults.status().as_u16(), 200);

    let out = {
        let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
        command
            .args(["comment", "--repo", REPO, "--pr", "40", "--api-url", &base])
            .env_remove("GITHUB_APP_ID")
            .env("GITHUB_TOKEN", TOKEN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut running = command.spawn().expect("steward comment");
        {
            use std::io::Write as _;
            let mut stdin = running.stdin.take().expect("stdin");
            stdin
                .write_all(plan_json("clean", "steward plan: 0 clients").as_bytes())
                .expect("plan");
        }
        running.wait_with_output().expect("output")
    };
    let resolved = GithubClient::new(&base, &GithubAuth::token(TOKEN))
        .expect("client")
        .resolve_tag(&repo(), "v3")
        .await;
    let log: Vec<LoggedRequest> = http
        .get(admin("requests"))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("log json");
    let comments: Vec<Value> = http
        .get(admin("comments?repo=example-org/web-app&pr=40"))
        .send()
        .await
        .expect("comments")
        .json()
        .await
        .expect("comments json");
    drop(child);

    assert_exit(&out, 0);
    assert_eq!(resolved.expect("tag"), SHA);
    assert_eq!(log.first().map(|r| r.status), Some(429), "{log:#?}");
    assert!(
        log.iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/issues/40/comments")),
        "{log:#?}"
    );
    assert_eq!(comments.len(), 4, "three seeded and ours: {comments:#?}");
}

/// Stops a child process however the test ends, so no emulator outlives a failed test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
