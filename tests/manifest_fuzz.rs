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
