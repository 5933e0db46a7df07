//! Whatever bytes arrive in a PR, loading a fleet returns diagnostics and never panics.

mod common;

use std::fs;

use proptest::prelude::*;
use steward::manifest::{self, LoadOptions};

fn load_with_client(dir: &std::path::Path, bytes: &[u8]) -> manifest::Loaded {
    fs::write(dir.join("clients/fuzz.yaml"), bytes).expect("write");
    manifest::load(dir, LoadOptions::default())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_in_a_client_file_give_diagnostics_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = common::copy_example_fleet();
        let loaded = load_with_client(dir.path(), &bytes);
        // The fuzzed file is either valid (vanishingly unlikely) or reported, and the
        // three good clients are still loaded.
        prop_assert!(loaded.fleet.as_ref().is_some_and(|f| f.clients.len() >= 3));
    }

    #[test]
    fn every_truncation_of_a_real_manifest_is_handled(cut in 0usize..1200) {
        let dir = common::copy_example_fleet();
        let real = fs::read(common::repo_root().join("fleet/clients/acme.yaml")).expect("read");
        let cut = cut.min(real.len());
        let mut renamed = real[..cut].to_vec();
        // Keep the name matching the file so only truncation is under test.
        for window in 0..renamed.len().saturating_sub(10) {
            if &renamed[window..window + 10] == b"name: acme" {
                renamed.splice(window + 6..window + 10, b"fuzz".iter().copied());
                break;
            }
        }
        let loaded = load_with_client(dir.path(), &renamed);
        prop_assert!(loaded.fleet.is_some());
    }

    #[test]
    fn random_yaml_shaped_text_never_panics(text in "[a-zA-Z0-9:{}\\[\\],&*!|>'\" \n-]{0,300}") {
        let _ = manifest::yaml::parse(&text);
    }
}

#[test]
fn an_oversized_manifest_is_refused_before_it_is_parsed() {
    let dir = common::copy_example_fleet();
    let big = format!("apiVersion: steward/v1\n# {}\n", "x".repeat(300 * 1024));
    let loaded = load_with_client(dir.path(), big.as_bytes());
    let err = loaded
        .errors()
        .find(|d| d.file.ends_with("fuzz.yaml"))
        .expect("refused");
    assert!(err.message.contains("larger than"), "{}", err.message);
}

#[test]
fn a_fleet_yaml_default_error_points_at_fleet_yaml() {
    let dir = common::copy_example_fleet();
    let path = dir.path().join("fleet.yaml");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(
        &path,
        text.replace("timezone: UTC", "timezone: Mars/Olympus"),
    )
    .expect("write");
    let loaded = manifest::load(dir.path(), LoadOptions::default());
    let err = loaded.errors().next().expect("an error");
    assert!(err.file.ends_with("fleet.yaml"), "{err}");
    assert_eq!(err.field, "spec.schedule.timezone");
}

/// Every string field of both manifest kinds, as a template: `@` marks the field that a
/// case replaces with arbitrary text; the others keep a valid value.
const CLIENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.labels.tier",
    "spec.wave",
    "spec.code.project",
    "spec.code.version",
    "spec.database.url.env",
    "spec.database.schemaVersion",
    "spec.database.verify.rlsTables",
    "spec.env.key",
    "spec.env.value",
    "spec.schedule.timezone",
    "spec.schedule.windows",
    "spec.policy.bake",
    "spec.policy.health.path",
    "spec.policy.health.timeout",
];

const FLEET_FIELDS: &[&str] = &[
    "spec.vercel.apiUrl",
    "spec.vercel.team",
    "spec.github.repo",
    "spec.waves",
    "spec.defaults.wave",
    "spec.defaults.schedule.windows",
    "spec.defaults.policy.bake",
    "spec.defaults.policy.health.path",
];

/// A client manifest with `text` in `field` (JSON strings are valid YAML scalars).
fn client_yaml(field: &str, text: &str) -> String {
    let q = |name: &str, good: &str| {
        if name == field {
            serde_json::to_string(text).expect("json string")
        } else {
            serde_json::to_string(good).expect("json string")
        }
    };
    let env_key = q("spec.env.key", "FEATURE_FLAG");
    format!(
        "apiVersion: steward/v1\nkind: Client\nmetadata:\n  name: {name}\n  labels: {{ tier: {tier} }}\n\
         spec:\n  wave: {wave}\n  code: {{ project: {project}, version: {version} }}\n\
         \x20 database:\n    url: {{ env: {url} }}\n    schemaVersion: {schema}\n    verify: {{ rlsTables: [{rls}] }}\n\
         \x20 env: {{ {env_key}: {env_value} }}\n\
         \x20 schedule: {{ timezone: {tz}, windows: [{window}] }}\n\
         \x20 policy: {{ bake: {bake}, health: {{ path: {path}, timeout: {timeout} }} }}\n",
        name = q("metadata.name", "fuzz"),
        tier = q("metadata.labels.tier", "gold"),
        wave = q("spec.wave", "main"),
        project = q("spec.code.project", "fuzz-web"),
        version = q(
            "spec.code.version",
            "4f9c2b7e1d3a5c6b8e0f1a2b3c4d5e6f7a8b9c0d"
        ),
        url = q("spec.database.url.env", "FUZZ_DATABASE_URL"),
        schema = q("spec.database.schemaVersion", "2025_01_13_001"),
        rls = q("spec.database.verify.rlsTables", "accounts"),
        env_value = q("spec.env.value", "on"),
        tz = q("spec.schedule.timezone", "Europe/Berlin"),
        window = q("spec.schedule.windows", "Sat 02:00-05:00"),
        bake = q("spec.policy.bake", "5m"),
        path = q("spec.policy.health.path", "/api/health"),
        timeout = q("spec.policy.health.timeout", "10s"),
    )
}

/// The example fleet's `fleet.yaml` with `text` in `field`.
fn fleet_yaml(migrations: &std::path::Path, field: &str, text: &str) -> String {
    let q = |name: &str, good: &str| {
        if name == field {
            serde_json::to_string(text).expect("json string")
        } else {
            serde_json::to_string(good).expect("json string")
        }
    };
    format!(
        "apiVersion: steward/v1\nkind: Fleet\nmetadata: {{ name: example }}\nspec:\n\
         \x20 migrations: {migrations}\n\
         \x20 vercel: {{ apiUrl: {api}, token: {{ env: VERCEL_TOKEN }}, team: {team} }}\n\
         \x20 github: {{ repo: {repo}, token: {{ env: GITHUB_TOKEN }} }}\n\
         \x20 fingerprintKey: {{ env: STEWARD_FINGERPRINT_KEY }}\n\
         \x20 waves: [{wave}, main]\n\
         \x20 defaults:\n    wave: {default_wave}\n    schedule: {{ windows: [{window}] }}\n\
         \x20   policy: {{ bake: {bake}, health: {{ path: {path} }} }}\n",
        migrations = serde_json::to_string(&migrations.display().to_string()).expect("json"),
        api = q("spec.vercel.apiUrl", "https://api.vercel.com"),
        team = q("spec.vercel.team", "team_example"),
        repo = q("spec.github.repo", "example-org/web-app"),
        wave = q("spec.waves", "canary"),
        default_wave = q("spec.defaults.wave", "main"),
        window = q("spec.defaults.schedule.windows", "daily 03:00-04:00"),
        bake = q("spec.defaults.policy.bake", "15m"),
        path = q("spec.defaults.policy.health.path", "/api/health"),
    )
}

/// Load (which validates), then evaluate every loaded client's schedule, build its
/// desired state and plan it against an empty database and project, and render the plan
/// in every format: the stages a manifest from a PR goes through.
fn load_validate_and_plan(dir: &std::path::Path) {
    let loaded = manifest::load(dir, LoadOptions::default());
    let _ = loaded.diagnostics.iter().map(ToString::to_string).count();
    let Some(fleet) = loaded.fleet else { return };
    let now = chrono::Utc::now();
    let key = steward::secret::Secret::new("fuzz-key".to_owned());
    let mut plans = Vec::new();
    for client in fleet.clients.values() {
        let _ = client.config.schedule.state(now);
        let _ = client.config.schedule.next_open(now);
        let sha = "4f9c2b7e1d3a5c6b8e0f1a2b3c4d5e6f7a8b9c0d".to_owned();
        let Ok((desired, _)) = steward::apply::desired::build(client, &key, sha, None) else {
            continue;
        };
        let ctx = steward::plan::Context {
            now,
            mode: steward::plan::Mode::operator(),
            wave_blocked: None,
        };
        plans.push(steward::plan::plan(
            &desired,
            &steward::plan::Observed::default(),
            &fleet.catalog,
            &|_| steward::plan::LintSummary::default(),
            &ctx,
        ));
    }
    let report = steward::plan::render::Report {
        plans,
        errors: Vec::new(),
        revision: None,
        notes: Vec::new(),
    };
    let _ = steward::plan::render::text(&report, false);
    let _ = steward::plan::render::json(&report, Some(&fleet.catalog));
}

/// Arbitrary Unicode, printable or not, with the characters that broke byte slicing
/// (multi-byte letters next to ASCII day names) well represented.
fn unicode_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,24}",
        "(Sat|Mon-Fri|daily|ab日|日曜|Ω)[ -~日本語é]{0,16}",
        "[A-Za-z日é]{1,6} [0-9]{1,2}:[0-9]{2}-[0-9]{1,2}:[0-9]{2}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_unicode_in_any_client_field_never_panics_load_validate_or_plan(
        field in proptest::sample::select(CLIENT_FIELDS),
        text in unicode_text(),
    ) {
        let dir = common::copy_example_fleet();
        fs::write(dir.path().join("clients/fuzz.yaml"), client_yaml(field, &text)).expect("write");
        load_validate_and_plan(dir.path());
    }

    #[test]
    fn arbitrary_unicode_in_any_fleet_field_never_panics_load_validate_or_plan(
        field in proptest::sample::select(FLEET_FIELDS),
        text in unicode_text(),
    ) {
        let dir = common::copy_example_fleet();
        let migrations = common::repo_root().join("migrations");
        fs::write(dir.path().join("fleet.yaml"), fleet_yaml(&migrations, field, &text)).expect("write");
        load_validate_and_plan(dir.path());
    }
}

#[test]
fn a_window_with_a_multibyte_day_is_an_error_naming_the_field_not_a_panic() {
    let dir = common::copy_example_fleet();
    fs::write(
        dir.path().join("clients/fuzz.yaml"),
        client_yaml("spec.schedule.windows", "ab日 02:00-03:00"),
    )
    .expect("write");
    let loaded = manifest::load(dir.path(), LoadOptions::default());
    let err = loaded
        .errors()
        .find(|d| d.file.ends_with("fuzz.yaml"))
        .expect("the window is refused");
    assert!(err.to_string().contains("spec.schedule.windows"), "{err}");
    assert!(err.message.contains("not a window"), "{}", err.message);
}

#[test]
fn the_good_templates_load_so_each_case_changes_only_its_field() {
    let dir = common::copy_example_fleet();
    let migrations = common::repo_root().join("migrations");
    fs::write(
        dir.path().join("fleet.yaml"),
        fleet_yaml(&migrations, "", ""),
    )
    .expect("write");
    fs::write(dir.path().join("clients/fuzz.yaml"), client_yaml("", "")).expect("write");
    let loaded = manifest::load(dir.path(), LoadOptions::default());
    let errors: Vec<String> = loaded.errors().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(loaded.fleet.is_some_and(|f| f.clients.contains_key("fuzz")));
}
