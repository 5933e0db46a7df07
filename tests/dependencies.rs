//! The lock file stays free of crates with advisories steward has met: a dependency bump
//! that brings one back fails here, naming the advisory, before it ships.

/// (crate, why it must not be in the tree).
const REFUSED: &[(&str, &str)] = &[
    (
        "rsa",
        "RUSTSEC-2023-0071: Marvin timing side channel, no fixed release (came in through sqlx 0.8's sqlx-mysql and jsonwebtoken's rust_crypto backend)",
    ),
    (
        "backoff",
        "RUSTSEC-2025-0012: unmaintained; steward retries with backon",
    ),
    (
        "serde_yaml",
        "deprecated by its author; steward reads YAML with serde-saphyr, which has budgets",
    ),
];

#[test]
fn the_lock_file_holds_no_crate_with_a_known_advisory() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock");
    let packages: Vec<&str> = lock
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .collect();
    assert!(
        packages.contains(&"sqlx") && packages.len() > 100,
        "Cargo.lock was read: {} packages",
        packages.len()
    );
    let found: Vec<String> = REFUSED
        .iter()
        .filter(|(name, _)| packages.contains(name))
        .map(|(name, why)| format!("{name}: {why}"))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}
