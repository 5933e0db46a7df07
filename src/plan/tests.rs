//! Table tests for the planner: every case is (desired, observed, context) → expected plan.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rstest::rstest;

use super::*;
use crate::manifest::schedule::{Schedule, parse_timezone};
use crate::manifest::{
    ApplyPolicy, ClientConfig, CodeConfig, CodeVersion, DatabaseConfig, DestructivePolicy,
    EnvValue, Policy,
};
use crate::migrations::{Catalog, Migration, Script};
use crate::secret::SecretRef;

const OLD_SHA: &str = "1111111111111111111111111111111111111111";
const NEW_SHA: &str = "2222222222222222222222222222222222222222";

fn v(text: &str) -> Version {
    text.parse().expect("version")
}

fn script(name: &str, sql: &str) -> Script {
    Script {
        path: PathBuf::from(name),
        sql: sql.to_owned(),
        checksum: format!("sum-{name}"),
    }
}

/// Three migrations; the third has no down (irreversible).
fn catalog() -> Catalog {
    let m = |version: &str, down: bool| Migration {
        version: v(version),
        name: format!("m{version}"),
        up: script(&format!("{version}.up.sql"), "create table t (a int);"),
        down: down.then(|| script(&format!("{version}.down.sql"), "drop table t;")),
        verify: None,
        no_transaction: false,
        impact: Default::default(),
    };
    Catalog {
        dir: PathBuf::from("migrations"),
        migrations: vec![
            m("2024_01_01_001", true),
            m("2024_02_01_001", true),
            m("2024_03_01_001", false),
        ],
    }
}

fn applied(versions: &[&str]) -> Vec<(Version, Option<String>)> {
    versions
        .iter()
        .map(|x| (v(x), Some(format!("sum-{x}.up.sql"))))
        .collect()
}

fn config() -> ClientConfig {
    ClientConfig {
        name: "acme".to_owned(),
        labels: BTreeMap::new(),
        wave: None,
        suspend: false,
        code: CodeConfig {
            project: "acme-web".to_owned(),
            version: CodeVersion::Sha(NEW_SHA.to_owned()),
        },
        database: DatabaseConfig {
            url: SecretRef::env("ACME_DATABASE_URL"),
            identity: None,
            schema_version: v("2024_02_01_001"),
            rls_tables: Vec::new(),
            checks: Vec::new(),
        },
        env: BTreeMap::from([("LOG_LEVEL".to_owned(), EnvValue::Literal("info".to_owned()))]),
        schedule: Schedule::any_time(),
        policy: Policy {
            bake: Duration::from_secs(60),
            // The default, `manual`, holds every plan; the approval has its own tests.
            apply: ApplyPolicy::Auto,
            ..Policy::default()
        },
        rehearsal_url: None,
    }
}

fn env(key: &str, fp: &str, sensitive: bool) -> DesiredEnv {
    DesiredEnv {
        key: key.to_owned(),
        fingerprint: fp.to_owned(),
        sensitive,
    }
}

fn seen(key: &str, fp: &str, sensitive: bool) -> ObservedEnv {
    ObservedEnv {
        key: key.to_owned(),
        fingerprint: Some(fp.to_owned()),
        sensitive,
        drifted: false,
    }
}

/// A converged client: schema at target, production on NEW_SHA, env as desired.
fn converged() -> (Desired, Observed) {
    let desired = Desired {
        config: config(),
        sha: NEW_SHA.to_owned(),
        version: CodeVersion::Sha(NEW_SHA.to_owned()),
        env: vec![
            env("LOG_LEVEL", "fp-info", false),
            env("STRIPE_KEY", "fp-key1", true),
        ],
        revision: Some("abc".to_owned()),
    };
    let observed = Observed {
        schema: SchemaObserved {
            current: Some(v("2024_02_01_001")),
            applied: applied(&["2024_01_01_001", "2024_02_01_001"]),
            identity: IdentityObserved::Matches,
            ..SchemaObserved::default()
        },
        code: CodeObserved {
            production: Some(Deployment {
                id: "dpl_old".to_owned(),
                sha: Some(NEW_SHA.to_owned()),
                url: None,
                origin: None,
            }),
            ..CodeObserved::default()
        },
        env: vec![
            seen("LOG_LEVEL", "fp-info", false),
            seen("STRIPE_KEY", "fp-key1", true),
        ],
        failure: None,
        rehearsal: None,
        interrupted: None,
        request_interrupted: None,
    };
    (desired, observed)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
        .expect("time")
        .with_timezone(&Utc) // a Tuesday
}

fn ctx(mode: Mode) -> Context {
    Context {
        now: now(),
        mode,
        wave_blocked: None,
    }
}

fn no_lint(_: &Version) -> LintSummary {
    LintSummary::default()
}

fn run(desired: &Desired, observed: &Observed) -> Plan {
    plan(
        desired,
        observed,
        &catalog(),
        &no_lint,
        &ctx(Mode::operator()),
    )
}

fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.steps.iter().map(Step::kind).collect()
}

const CODE_TAIL: [&str; 5] = ["deploy", "wait_ready", "health_check", "promote", "bake"];

fn with(prefix: &[&'static str], middle: &[&'static str], tail: bool) -> Vec<&'static str> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(middle);
    if tail {
        out.extend_from_slice(&CODE_TAIL);
    }
    out.push("record");
    out
}

#[rstest]
#[case::nothing_to_do("converged", vec![])]
#[case::schema_only("schema", with(&["preflight", "backup", "migrate_up", "verify"], &[], false))]
#[case::env_only("env", with(&["preflight", "set_env"], &[], true))]
#[case::code_only("code", with(&["preflight"], &[], true))]
#[case::all_three("all", with(&["preflight", "backup", "migrate_up", "verify", "set_env"], &[], true))]
#[case::downgrade_runs_code_first_then_down_migrations("downgrade", with(&["preflight", "backup"], &["deploy", "wait_ready", "health_check", "promote", "bake", "migrate_down", "verify"], false))]
#[case::a_missing_backup_is_taken_before_migrating("no_backup", with(&["preflight", "backup", "migrate_up", "verify"], &[], false))]
fn steps_come_in_the_guarded_order(#[case] scenario: &str, #[case] expected: Vec<&'static str>) {
    let (mut desired, mut observed) = converged();
    match scenario {
        "converged" => {}
        "schema" => observed.schema.current = Some(v("2024_01_01_001")),
        "env" => desired.env[0].fingerprint = "fp-debug".to_owned(),
        "code" => observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned()),
        "all" => {
            observed.schema.current = Some(v("2024_01_01_001"));
            desired.env[0].fingerprint = "fp-debug".to_owned();
            observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
        }
        "downgrade" => {
            desired.config.database.schema_version = v("2024_01_01_001");
            desired.config.policy.destructive = DestructivePolicy::Allow;
            desired.sha = OLD_SHA.to_owned();
        }
        "no_backup" => {
            observed.schema.current = None;
            observed.schema.applied.clear();
            observed.schema.last_backup = None;
        }
        other => unreachable!("{other}"),
    }
    let plan = run(&desired, &observed);
    assert_eq!(kinds(&plan), expected);
    assert!(plan.blocks.is_empty(), "{:?}", plan.blocks);
    assert_eq!(
        plan.outcome(),
        if expected.is_empty() {
            Outcome::Converged
        } else {
            Outcome::Changes
        }
    );
}

#[test]
fn a_destructive_migration_is_blocked_under_deny_and_runs_under_allow() {
    let (desired, mut observed) = converged();
    observed.schema.current = Some(v("2024_01_01_001"));
    let lint = |version: &Version| LintSummary {
        destructive_up: if version.as_str() == "2024_02_01_001" {
            vec!["x.up.sql:3: DROP COLUMN".to_owned()]
        } else {
            vec![]
        },
        ..LintSummary::default()
    };
    let blocked = plan(
        &desired,
        &observed,
        &catalog(),
        &lint,
        &ctx(Mode::operator()),
    );
    assert_eq!(blocked.outcome(), Outcome::Blocked);
    assert!(blocked.blocks.iter().any(
        |b| matches!(b, Block::Destructive { version, .. } if version.as_str() == "2024_02_01_001")
    ));
    assert!(!blocked.runnable());

    let mut allowed = desired.clone();
    allowed.config.policy.destructive = DestructivePolicy::Allow;
    let plan = plan(
        &allowed,
        &observed,
        &catalog(),
        &lint,
        &ctx(Mode::operator()),
    );
    assert_eq!(plan.outcome(), Outcome::Changes);
    assert!(plan.lint.iter().any(|l| l.contains("DROP COLUMN")));
}

#[test]
fn transaction_control_in_a_pending_migration_blocks_whatever_the_policy() {
    let (mut desired, mut observed) = converged();
    observed.schema.current = Some(v("2024_01_01_001"));
    desired.config.policy.destructive = DestructivePolicy::Allow;
    let lint = |version: &Version| LintSummary {
        transaction_control_up: if version.as_str() == "2024_02_01_001" {
            vec!["x.up.sql:2: error: transaction-control: COMMIT ...".to_owned()]
        } else {
            vec![]
        },
        ..LintSummary::default()
    };
    let blocked = plan(
        &desired,
        &observed,
        &catalog(),
        &lint,
        &ctx(Mode::operator()),
    );
    assert_eq!(blocked.outcome(), Outcome::Blocked);
    assert!(blocked.blocks.iter().any(
        |b| matches!(b, Block::TransactionControl { version, .. } if version.as_str() == "2024_02_01_001")
    ));
}

#[test]
fn outside_the_window_the_plan_holds_and_says_when_the_window_opens() {
    let (mut desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    desired.config.schedule = Schedule {
        timezone: parse_timezone("Europe/Berlin").expect("tz"),
        windows: vec!["Sat 02:00-05:00".parse().expect("window")],
        urgent: false,
    };
    let plan = run(&desired, &observed);
    let next = DateTime::parse_from_rfc3339("2026-11-28T01:00:00Z")
        .expect("t")
        .with_timezone(&Utc);
    assert_eq!(
        plan.holds,
        vec![Hold::OutsideWindow {
            client: "acme".to_owned(),
            next_open: Some(next)
        }]
    );
    assert!(!plan.runnable());
    let said = plan.holds[0].to_string();
    assert!(
        said.contains("2026-11-28 01:00 UTC")
            && said.contains("`steward apply acme --ignore-window`"),
        "{said}"
    );
}

#[test]
fn an_operator_who_ignores_the_window_gets_a_runnable_plan_that_says_so() {
    let (mut desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    desired.config.schedule = Schedule {
        timezone: parse_timezone("UTC").expect("tz"),
        windows: vec!["Sat 02:00-05:00".parse().expect("window")],
        urgent: false,
    };
    let mode = Mode::Operator {
        approved: None,
        ignore_window: true,
        revert_outside_change: false,
    };
    let plan = plan(&desired, &observed, &catalog(), &no_lint, &ctx(mode));
    assert!(plan.holds.is_empty(), "{:?}", plan.holds);
    assert!(plan.runnable());
    assert!(
        plan.notes.iter().any(|n| n.contains("--ignore-window")),
        "{:?}",
        plan.notes
    );
    let daemon = super::plan(
        &desired,
        &observed,
        &catalog(),
        &no_lint,
        &ctx(Mode::Daemon),
    );
    assert!(!daemon.runnable(), "the daemon cannot override a window");
}

#[test]
fn an_urgent_change_bypasses_the_window() {
    let (mut desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    desired.config.schedule = Schedule {
        timezone: parse_timezone("UTC").expect("tz"),
        windows: vec!["Sat 02:00-05:00".parse().expect("window")],
        urgent: true,
    };
    let plan = run(&desired, &observed);
    assert!(plan.holds.is_empty());
    assert!(plan.runnable());
    assert!(
        plan.notes
            .contains(&"maintenance window bypassed: urgent".to_owned()),
        "{:?}",
        plan.notes
    );
}

#[test]
fn a_paused_client_holds_until_it_is_unpaused_and_says_how() {
    let (desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    observed.code.paused = true;
    let plan = run(&desired, &observed);
    let client = desired.config.name.clone();
    assert_eq!(
        plan.holds,
        vec![Hold::Paused {
            client: client.clone()
        }]
    );
    assert_eq!(
        plan.holds[0].command(),
        Some(format!("steward unpause {client}"))
    );
    observed.code.paused = false;
    assert!(run(&desired, &observed).holds.is_empty());
}

#[test]
fn a_suspended_client_holds_with_its_reason() {
    let (mut desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    desired.config.suspend = true;
    let plan = run(&desired, &observed);
    assert_eq!(plan.holds, vec![Hold::Suspended]);
    assert_eq!(
        plan.outcome(),
        Outcome::Changes,
        "the change is still shown"
    );
}

#[test]
fn manual_policy_holds_in_every_mode_until_an_operator_approves_this_very_hash() {
    let (mut desired, mut observed) = converged();
    desired.config.policy.apply = ApplyPolicy::Manual;
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    let with = |mode: Mode| plan(&desired, &observed, &catalog(), &no_lint, &ctx(mode));
    let daemon = with(Mode::Daemon);
    let reviewer = with(Mode::operator());
    assert_eq!(
        daemon.hash, reviewer.hash,
        "who runs it does not change what it is"
    );
    let approval = Hold::AwaitingApproval {
        client: "acme".to_owned(),
        plan_hash: daemon.hash.clone(),
    };
    assert_eq!(daemon.holds, vec![approval.clone()]);
    assert_eq!(
        reviewer.holds,
        vec![approval.clone()],
        "the plan shows it too"
    );
    assert_eq!(
        approval.to_string(),
        format!(
            "awaiting approval: run `steward apply acme --plan-hash {}` (policy.apply: manual)",
            daemon.hash
        )
    );

    let approved = with(Mode::Operator {
        approved: Some(daemon.hash.clone()),
        ignore_window: false,
        revert_outside_change: false,
    });
    assert!(approved.holds.is_empty() && approved.runnable());
    let other = with(Mode::Operator {
        approved: Some("0123456789abcdef".to_owned()),
        ignore_window: false,
        revert_outside_change: false,
    });
    assert_eq!(other.holds, vec![approval], "another hash approves nothing");
}

#[test]
fn a_release_that_failed_is_held_though_its_plan_changed_until_the_manifest_changes() {
    let (mut desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    observed.schema.current = Some(v("2024_01_01_001"));
    observed.schema.applied = applied(&["2024_01_01_001"]);
    let first = run(&desired, &observed);
    // The bake failed after the migration ran; the schema was kept, so the plan now has
    // no migration in it, but it is still the release that failed.
    observed.schema.current = Some(v("2024_02_01_001"));
    observed.schema.applied = applied(&["2024_01_01_001", "2024_02_01_001"]);
    observed.failure = Some(Failure {
        plan_hash: first.hash.clone(),
        release: Some(first.release.clone()),
        step: "bake".to_owned(),
        error: "503".to_owned(),
        at: now(),
    });
    let again = run(&desired, &observed);
    assert_ne!(
        again.hash, first.hash,
        "the plan is not the one that failed"
    );
    assert_eq!(again.release, first.release, "the release is");
    assert!(
        matches!(again.holds.as_slice(), [Hold::Failed { step, .. }] if step == "bake"),
        "{:?}",
        again.holds
    );
    let said = again.holds[0].to_string();
    assert!(
        said.contains("this release failed at bake") && said.contains("`steward retry acme`"),
        "{said}"
    );

    desired.sha = "3333333333333333333333333333333333333333".to_owned();
    let changed = run(&desired, &observed);
    assert_ne!(changed.release, first.release);
    assert!(changed.holds.is_empty(), "a new manifest is a new release");
}

#[test]
fn fixing_the_failed_pending_migration_is_a_new_release_that_runs_without_retry() {
    let (desired, mut observed) = converged();
    observed.schema.current = Some(v("2024_01_01_001"));
    observed.schema.applied = applied(&["2024_01_01_001"]);
    let failed = run(&desired, &observed);
    observed.failure = Some(Failure {
        plan_hash: failed.hash.clone(),
        release: Some(failed.release.clone()),
        step: "migrate_up".to_owned(),
        error: "syntax error".to_owned(),
        at: now(),
    });
    assert!(!run(&desired, &observed).holds.is_empty());
    let mut fixed = catalog();
    fixed.migrations[1].up.checksum = "sum-fixed".to_owned();
    let plan = plan(
        &desired,
        &observed,
        &fixed,
        &no_lint,
        &ctx(Mode::operator()),
    );
    assert!(plan.holds.is_empty(), "{:?}", plan.holds);
    assert!(plan.runnable());
}

#[test]
fn a_failure_recorded_before_releases_is_matched_by_its_plan_hash() {
    let (desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    let first = run(&desired, &observed);
    observed.failure = Some(Failure {
        plan_hash: first.hash.clone(),
        release: None,
        step: "health_check".to_owned(),
        error: "503".to_owned(),
        at: now(),
    });
    assert!(matches!(
        run(&desired, &observed).holds.as_slice(),
        [Hold::Failed { .. }]
    ));
}

#[test]
fn env_changed_in_the_dashboard_is_drift_and_is_put_back() {
    let (desired, mut observed) = converged();
    observed.env[0].drifted = true;
    let plan = run(&desired, &observed);
    assert_eq!(plan.changes.env.len(), 1);
    let change = &plan.changes.env[0];
    assert_eq!(
        (change.key.as_str(), change.action, change.drift),
        ("LOG_LEVEL", EnvAction::Change, true)
    );
    assert!(matches!(
        plan.steps.iter().find(|s| s.kind() == "deploy"),
        Some(Step::Deploy {
            reason: DeployReason::Env,
            ..
        })
    ));
}

#[rstest]
#[case::unchanged("fp-key1", 0)]
#[case::changed("fp-key2", 1)]
fn a_sensitive_value_is_compared_by_fingerprint_and_never_shown(
    #[case] fingerprint: &str,
    #[case] expected: usize,
) {
    let (mut desired, observed) = converged();
    desired.env[1].fingerprint = fingerprint.to_owned();
    let plan = run(&desired, &observed);
    assert_eq!(plan.changes.env.len(), expected);
    if let Some(change) = plan.changes.env.first() {
        assert!(change.sensitive);
        assert_eq!(
            (change.from.as_deref(), change.to.as_deref()),
            (None, None),
            "no fingerprint for sensitive values"
        );
        assert!(!plan.notes.is_empty(), "the undo caveat is explained");
    }
}

#[test]
fn only_variables_steward_created_are_removed() {
    let (desired, mut observed) = converged();
    observed.env.push(seen("OLD_FLAG", "fp-old", false));
    observed.env.push(ObservedEnv {
        key: "POSTGRES_URL".to_owned(),
        fingerprint: None,
        sensitive: true,
        drifted: false,
    });
    let plan = run(&desired, &observed);
    let keys: Vec<(&str, EnvAction)> = plan
        .changes
        .env
        .iter()
        .map(|c| (c.key.as_str(), c.action))
        .collect();
    assert_eq!(keys, vec![("OLD_FLAG", EnvAction::Remove)]);
}

/// At 2024_03_01_001 (irreversible), asked to go back to 2024_02_01_001.
fn irreversible_downgrade() -> (Desired, Observed) {
    let (mut desired, mut observed) = converged();
    observed.schema.current = Some(v("2024_03_01_001"));
    observed.schema.applied = applied(&["2024_01_01_001", "2024_02_01_001", "2024_03_01_001"]);
    desired.config.policy.destructive = DestructivePolicy::Allow;
    (desired, observed)
}

#[test]
fn a_downgrade_through_an_irreversible_migration_is_blocked() {
    let (desired, observed) = irreversible_downgrade();
    let plan = run(&desired, &observed);
    assert_eq!(plan.outcome(), Outcome::Blocked);
    assert_eq!(
        plan.blocks,
        vec![Block::Irreversible {
            version: v("2024_03_01_001")
        }]
    );
    assert!(plan.blocks[0].to_string().contains("steward restore"));
}

#[test]
fn under_policy_restore_an_irreversible_downgrade_restores_the_backup_taken_at_the_target() {
    let (mut desired, mut observed) = irreversible_downgrade();
    desired.config.policy.irreversible = IrreversiblePolicy::Restore;
    observed.schema.last_backup = Some(BackupObserved {
        id: "20241101T000000.000Z".to_owned(),
        version: Some(v("2024_02_01_001")),
        created_at: chrono::Utc::now(),
    });
    let plan = run(&desired, &observed);
    assert!(plan.blocks.is_empty(), "{:?}", plan.blocks);
    assert!(
        plan.steps.contains(&Step::RestoreBackup {
            backup: "20241101T000000.000Z".to_owned(),
            version: v("2024_02_01_001"),
        }),
        "{:?}",
        plan.steps
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("every write since then is discarded")),
        "the plan says what a restore loses: {:?}",
        plan.notes
    );

    // A backup at another version cannot stand in: blocked as before.
    observed
        .schema
        .last_backup
        .as_mut()
        .expect("backup")
        .version = Some(v("2024_01_01_001"));
    let plan = run(&desired, &observed);
    assert_eq!(plan.outcome(), Outcome::Blocked);
}

#[test]
fn an_edited_applied_migration_blocks_naming_both_checksums() {
    let (desired, mut observed) = converged();
    observed.schema.applied[0].1 = Some("sum-from-before".to_owned());
    let plan = run(&desired, &observed);
    let text = plan
        .blocks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("2024_01_01_001")
            && text.contains("sum-from-before")
            && text.contains("sum-2024_01_01_001.up.sql"),
        "{text}"
    );
}

#[test]
fn a_database_ahead_of_the_migrations_folder_is_blocked() {
    let (desired, mut observed) = converged();
    observed.schema.applied.push((v("2030_01_01_001"), None));
    observed.schema.current = Some(v("2030_01_01_001"));
    let plan = run(&desired, &observed);
    assert!(plan.blocks.contains(&Block::UnknownVersion {
        version: v("2030_01_01_001")
    }));
}

#[test]
fn the_wrong_database_is_blocked_before_anything_else() {
    let (desired, mut observed) = converged();
    observed.schema.identity = IdentityObserved::OtherClient("globex".to_owned());
    let plan = run(&desired, &observed);
    assert!(
        matches!(plan.blocks.as_slice(), [Block::Identity { reason }] if reason.contains("globex"))
    );
}

#[test]
fn an_earlier_wave_holds_a_later_one() {
    let (desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    let context = Context {
        wave_blocked: Some("canary: 1 of 2 clients not converged".to_owned()),
        ..ctx(Mode::Daemon)
    };
    let mut d = desired.clone();
    d.config.policy.apply = ApplyPolicy::Auto;
    let plan = plan(&d, &observed, &catalog(), &no_lint, &context);
    assert!(matches!(plan.holds.as_slice(), [Hold::Wave { reason }] if reason.contains("canary")));
}

#[test]
fn the_hash_is_stable_and_changes_with_what_would_be_done() {
    let (desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    let a = run(&desired, &observed);
    let b = run(&desired, &observed);
    assert_eq!(a, b);
    observed.code.production.as_mut().expect("prod").id = "dpl_other".to_owned();
    assert_ne!(
        run(&desired, &observed).hash,
        a.hash,
        "a different rollback target is a different plan"
    );
}

#[test]
fn renderings_carry_no_secret_and_the_json_has_its_documented_top_level() {
    let (mut desired, mut observed) = converged();
    observed.code.production.as_mut().expect("prod").sha = Some(OLD_SHA.to_owned());
    desired.env[1].fingerprint = "fp-key2".to_owned();
    let plan = run(&desired, &observed);
    let report = render::Report {
        plans: vec![plan],
        errors: vec![],
        revision: Some("abc".to_owned()),
        notes: vec![],
    };
    let json = render::json(&report, Some(&catalog()));
    for key in [
        "version", "outcome", "summary", "clients", "errors", "notes", "markdown",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["outcome"], "changes");
    let markdown = render::markdown(&report, Some(&catalog()));
    assert!(markdown.starts_with(render::COMMENT_MARKER));
    assert!(markdown.contains("| `acme` | changes |"));
    let text = render::text(&report, false);
    for out in [markdown, text, json.to_string()] {
        assert!(
            !out.contains("fp-key2") && !out.contains("fp-key1"),
            "sensitive fingerprints stay hidden"
        );
    }
}

#[test]
fn editing_a_pending_migration_after_review_changes_the_plan_hash() {
    let (desired, mut observed) = converged();
    observed.schema.current = Some(v("2024_01_01_001"));
    observed.schema.applied = applied(&["2024_01_01_001"]);
    let reviewed = run(&desired, &observed);
    let mut edited = catalog();
    edited.migrations[1].up.checksum = "sum-edited".to_owned();
    let now = plan(
        &desired,
        &observed,
        &edited,
        &no_lint,
        &ctx(Mode::operator()),
    );
    assert_eq!(kinds(&reviewed), kinds(&now), "the same steps");
    assert_ne!(reviewed.hash, now.hash, "but not the same SQL");

    let mut verify_edited = catalog();
    verify_edited.migrations[0].verify = Some(script("2024_01_01_001.verify.sql", "select true"));
    let now = plan(
        &desired,
        &observed,
        &verify_edited,
        &no_lint,
        &ctx(Mode::operator()),
    );
    assert_ne!(
        reviewed.hash, now.hash,
        "the verify step runs every verify file up to the target"
    );
}

fn killed_during_bake(production: &str) -> Interruption {
    Interruption {
        command: "apply".to_owned(),
        step: "bake".to_owned(),
        at: chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        died: true,
        unfinished_bake: Some(UnfinishedBake {
            deployment: production.to_owned(),
            previous: Some("dpl_older".to_owned()),
        }),
    }
}

#[test]
fn a_bake_that_never_finished_on_production_is_baked_again_and_the_plan_says_why() {
    let (desired, mut observed) = converged();
    observed.interrupted = Some(killed_during_bake("dpl_old"));
    let p = run(&desired, &observed);
    let kinds: Vec<&str> = p.steps.iter().map(Step::kind).collect();
    assert_eq!(kinds, ["preflight", "rebake", "record"]);
    assert_eq!(
        p.steps[1].undo(),
        Undo::PromotePrevious {
            deployment: Some("dpl_older".to_owned())
        }
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("interrupted during bake at 2023-11-14")),
        "{:?}",
        p.notes
    );
}

#[test]
fn an_unfinished_bake_of_a_build_that_is_no_longer_production_is_not_baked() {
    let (desired, mut observed) = converged();
    observed.interrupted = Some(killed_during_bake("dpl_replaced"));
    assert!(run(&desired, &observed).steps.is_empty());
}

fn daemon_plan(desired: &Desired, observed: &Observed) -> Plan {
    plan(desired, observed, &catalog(), &no_lint, &ctx(Mode::Daemon))
}

#[test]
fn a_project_that_auto_promotes_pushes_is_blocked_naming_the_risk_and_the_command_that_clears_it() {
    let (desired, mut observed) = converged();
    observed.code.auto_promote = true;
    let plan = daemon_plan(&desired, &observed);
    assert_eq!(plan.outcome(), Outcome::Blocked);
    let said = plan.blocks[0].to_string();
    assert!(said.contains("before its migrations"), "{said}");
    assert!(
        said.contains("steward adopt acme --take-over-promotion"),
        "{said}"
    );
}

#[test]
fn under_take_over_promotion_the_plan_turns_auto_assignment_off_first_with_its_undo() {
    let (mut desired, mut observed) = converged();
    desired.config.policy.take_over_promotion = true;
    observed.code.auto_promote = true;
    let plan = daemon_plan(&desired, &observed);
    assert!(plan.blocks.is_empty(), "{:?}", plan.blocks);
    assert_eq!(
        plan.steps,
        vec![
            Step::Preflight,
            Step::TakeOverPromotion {
                production: Some("dpl_old".to_owned())
            },
            Step::Record
        ]
    );
    assert_eq!(plan.steps[1].undo(), Undo::RestoreAutoPromotion);
}

fn moved_outside() -> (Desired, Observed) {
    let (desired, mut observed) = converged();
    observed.code.production = Some(Deployment {
        id: "dpl_pushed".to_owned(),
        sha: Some(OLD_SHA.to_owned()),
        url: None,
        origin: Some(Origin {
            by: Some("octo-dev".to_owned()),
            at: Some(now()),
            message: Some("Merge pull request #7".to_owned()),
        }),
    });
    observed.code.promoted_by_steward = vec!["dpl_old".to_owned()];
    (desired, observed)
}

#[test]
fn production_on_a_commit_steward_did_not_promote_is_held_with_who_and_when() {
    let (desired, observed) = moved_outside();
    let plan = daemon_plan(&desired, &observed);
    assert!(!plan.runnable(), "held: nothing is deployed");
    let held = plan
        .holds
        .iter()
        .find(|h| matches!(h, Hold::OutsideChange { .. }))
        .expect("an outside-change hold");
    let said = held.to_string();
    for part in [
        "production changed outside steward",
        "by octo-dev",
        "2026-11-24 12:00 UTC",
        "pin spec.code.version to 1111111111111111111111111111111111111111",
    ] {
        assert!(said.contains(part), "`{part}` in: {said}");
    }
    assert_eq!(
        held.command().as_deref(),
        Some("steward apply acme --revert-outside-change")
    );
}

#[test]
fn an_outside_change_is_reverted_by_the_operators_flag_or_by_policy_and_said_in_the_notes() {
    let (desired, observed) = moved_outside();
    let operator = Mode::Operator {
        approved: None,
        ignore_window: false,
        revert_outside_change: true,
    };
    let plan = plan(&desired, &observed, &catalog(), &no_lint, &ctx(operator));
    assert!(plan.runnable(), "{:?}", plan.holds);
    assert!(plan.outside_change.is_some());
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("--revert-outside-change"))
    );

    let (mut desired, observed) = moved_outside();
    desired.config.policy.outside_change = OutsideChangePolicy::Revert;
    let plan = daemon_plan(&desired, &observed);
    assert!(plan.runnable(), "{:?}", plan.holds);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("policy.outsideChange: revert"))
    );
}

#[test]
fn without_a_record_of_what_steward_promoted_or_on_the_manifests_commit_nothing_is_an_outside_change()
 {
    let (desired, mut observed) = moved_outside();
    observed.code.promoted_by_steward.clear();
    assert_eq!(daemon_plan(&desired, &observed).outside_change, None);
    let (desired, mut observed) = moved_outside();
    if let Some(p) = observed.code.production.as_mut() {
        p.sha = Some(NEW_SHA.to_owned());
    }
    assert_eq!(daemon_plan(&desired, &observed).outside_change, None);
}
