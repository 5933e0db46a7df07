//! The published JSON Schemas are generated from the types and the example fleet obeys them.

mod common;

use steward::commands::schema::render;
use steward::manifest::schema::Kind;

#[test]
fn the_checked_in_schemas_match_the_types() {
    for kind in [Kind::Fleet, Kind::Client] {
        let path = common::repo_root().join("schemas").join(kind.file_name());
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            on_disk == render(kind),
            "{} is stale: run `cargo run -- schema --out schemas` and commit the result",
            path.display()
        );
    }
}

#[test]
fn every_example_manifest_validates_against_the_published_schema() {
    let root = common::repo_root();
    let check = |kind: Kind, file: std::path::PathBuf| {
        let text = std::fs::read_to_string(&file).expect("read");
        let doc = steward::manifest::yaml::parse(&text).expect("parse");
        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("schemas").join(kind.file_name())).expect("schema"),
        )
        .expect("json");
        let validator = jsonschema::validator_for(&schema).expect("valid schema");
        let errors: Vec<String> = validator
            .iter_errors(&doc.value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    };
    check(Kind::Fleet, root.join("fleet/fleet.yaml"));
    let mut count = 0;
    for entry in std::fs::read_dir(root.join("fleet/clients")).expect("clients") {
        check(Kind::Client, entry.expect("entry").path());
        count += 1;
    }
    assert_eq!(count, 3);
}

#[test]
fn the_schema_rejects_unknown_keys_so_editors_flag_typos() {
    let schema = Kind::Client.schema();
    let validator = jsonschema::validator_for(schema).expect("valid schema");
    let doc = serde_json::json!({
        "apiVersion": "steward/v1", "kind": "Client",
        "metadata": {"name": "x"},
        "spec": {"database": {"schemaVerison": "2024_01_01_001"}}
    });
    assert!(!validator.is_valid(&doc));
}
