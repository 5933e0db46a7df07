//! `steward validate` on the example fleet and on broken fleets, run as a process.

mod common;

use std::fs;

use common::{copy_example_fleet, stderr, stdout, steward};

#[test]
fn the_example_fleet_is_valid() {
    let fleet = common::repo_root().join("fleet");
    let output = steward(&["validate", "--fleet", fleet.to_str().expect("utf8")], &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stderr(&output).contains("3 clients"), "{}", stderr(&output));
}

#[test]
fn a_broken_fleet_reports_every_error_with_file_line_column_field_and_suggestion() {
    let dir = copy_example_fleet();
    let clients = dir.path().join("clients");
    // A typo in a key.
    let globex = fs::read_to_string(clients.join("globex.yaml")).expect("read");
    fs::write(
        clients.join("globex.yaml"),
        globex.replace("schemaVersion:", "schemaVerison:"),
    )
    .expect("write");
    // A wrong type.
    let acme = fs::read_to_string(clients.join("acme.yaml")).expect("read");
    fs::write(
        clients.join("acme.yaml"),
        acme.replace("  wave: canary\n", "  wave: canary\n  suspend: maybe\n"),
    )
    .expect("write");
    // A duplicate client: a second file declaring initech.
    let initech = fs::read_to_string(clients.join("initech.yaml")).expect("read");
    fs::write(clients.join("initech-copy.yaml"), &initech).expect("write");
    // An alias bomb.
    let mut bomb =
        String::from("apiVersion: steward/v1\nkind: Client\nmetadata: {name: bomb}\nspec:\n");
    bomb.push_str("  a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        bomb.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    fs::write(clients.join("bomb.yaml"), bomb).expect("write");

    let output = steward(
        &["validate", "--fleet", dir.path().to_str().expect("utf8")],
        &[],
    );
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}{}", stderr(&output));

    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle) && l.contains("error"))
            .unwrap_or_else(|| panic!("no error line with {needle:?} in:\n{out}"))
            .to_owned()
    };
    let typo = line("schemaVerison");
    assert!(typo.contains("globex.yaml:14:5:"), "{typo}");
    assert!(typo.contains("did you mean `schemaVersion`"), "{typo}");

    let wrong_type = line("spec.suspend");
    assert!(wrong_type.contains("acme.yaml:10:12:"), "{wrong_type}");
    assert!(wrong_type.contains("expected a boolean"), "{wrong_type}");

    let duplicate = line("duplicate client name");
    assert!(duplicate.contains("metadata.name"), "{duplicate}");

    let bomb = line("bomb.yaml");
    assert!(bomb.contains("refused"), "{bomb}");
    assert!(
        !output.stderr.windows(5).any(|w| w == b"panic"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn validate_as_json_lists_diagnostics_with_positions() {
    let dir = copy_example_fleet();
    let path = dir.path().join("clients/initech.yaml");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(&path, text.replace("apply: manual", "apply: sometimes")).expect("write");
    let output = steward(
        &[
            "validate",
            "--fleet",
            dir.path().to_str().expect("utf8"),
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["valid"], false);
    let diag = report["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["severity"] == "error")
        .expect("an error");
    assert_eq!(diag["field"], "spec.policy.apply");
    assert_eq!(diag["line"], 20);
    assert_eq!(diag["suggestion"], serde_json::Value::Null);
    assert!(
        diag["message"]
            .as_str()
            .expect("msg")
            .contains("auto, manual")
    );
}

#[test]
fn require_secrets_turns_unset_secret_variables_into_errors() {
    let fleet = common::repo_root().join("fleet");
    let fleet = fleet.to_str().expect("utf8");
    let lenient = steward(&["validate", "--fleet", fleet], &[]);
    assert_eq!(lenient.status.code(), Some(0));
    assert!(
        stdout(&lenient)
            .contains("warning: spec.database.url: secret variable ACME_DATABASE_URL is not set")
    );
    let strict = steward(&["validate", "--fleet", fleet, "--require-secrets"], &[]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        stdout(&strict)
            .contains("error: spec.database.url: secret variable ACME_DATABASE_URL is not set")
    );
}

#[test]
fn a_manifest_symlinked_to_a_file_outside_the_fleet_is_refused_without_echoing_it() {
    let dir = copy_example_fleet();
    let outside = tempfile::tempdir().expect("tempdir");
    // Looks enough like a manifest that a reader would quote its lines in errors.
    let target = outside.path().join("private.yaml");
    fs::write(
        &target,
        "apiVersion: steward/v1\nkind: Client\nmetadata: {name: leak}\nspec:\n  db_password: hunter2-OUTSIDE-SECRET\n",
    )
    .expect("write");
    std::os::unix::fs::symlink(&target, dir.path().join("clients/leak.yaml")).expect("symlink");

    let output = steward(
        &["validate", "--fleet", dir.path().to_str().expect("utf8")],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let all = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        all.contains("leak.yaml") && all.contains("outside the fleet folder"),
        "{all}"
    );
    assert!(
        !all.contains("hunter2"),
        "the target's content is never echoed:\n{all}"
    );
    assert!(!all.contains("db_password"), "not even its keys:\n{all}");
}

#[test]
fn a_manifest_symlinked_to_a_file_inside_the_fleet_is_read() {
    let dir = copy_example_fleet();
    let clients = dir.path().join("clients");
    fs::create_dir(dir.path().join("shared")).expect("mkdir");
    let acme = fs::read_to_string(clients.join("acme.yaml")).expect("read");
    fs::write(dir.path().join("shared/acme.yaml"), acme).expect("write");
    fs::remove_file(clients.join("acme.yaml")).expect("rm");
    std::os::unix::fs::symlink("../shared/acme.yaml", clients.join("acme.yaml")).expect("symlink");

    let output = steward(
        &["validate", "--fleet", dir.path().to_str().expect("utf8")],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("3 clients"), "{}", stderr(&output));
}

#[test]
fn client_contacts_are_checked_an_address_and_a_mail_server_and_their_webhook_secrets() {
    let dir = copy_example_fleet();
    let acme_file = dir.path().join("clients/acme.yaml");
    let acme = fs::read_to_string(&acme_file).expect("read");
    fs::write(
        &acme_file,
        acme.replace(
            "  wave: canary\n",
            "  wave: canary\n  notify:\n    webhooks: [{url: {env: ACME_TEAM_HOOK_URL}}]\n    email: [it@acme.example, not-an-address]\n    notes: Reports pause during updates.\n",
        ),
    )
    .expect("write");
    let fleet = dir.path().to_str().expect("utf8");
    let output = steward(&["validate", "--fleet", fleet], &[]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}{}", stderr(&output));
    assert!(
        out.contains("spec.notify.email.1: `not-an-address` is not an email address"),
        "{out}"
    );
    assert!(
        out.contains("spec.notify.email: client emails need a mail server"),
        "{out}"
    );
    assert!(
        out.contains(
            "warning: spec.notify.webhooks.0.url: secret variable ACME_TEAM_HOOK_URL is not set"
        ),
        "{out}"
    );
}
