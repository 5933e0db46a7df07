//! Deciding what to undo after a failure. Pure, so the rule is table-tested apart from
//! the I/O that carries it out:
//!
//! - before promote, the new code never served production traffic: undo everything,
//!   schema included, in reverse order;
//! - after promote (a failure while baking), or once a rollout's canary took traffic, old
//!   code must run on the new schema anyway (expand/contract), so code and env go back
//!   and the schema stays — said loudly;
//! - `policy.rollback: manual` undoes nothing and leaves the client Failed;
//! - taking promotion over is kept: a failed release is no reason to let the next push
//!   to the production branch go live by itself again.

use serde::Serialize;

use crate::manifest::RollbackPolicy;
use crate::plan::{Step, Undo};

/// What the executor will undo, and what it deliberately keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndoPlan {
    /// Undos to run, in order (the reverse of the steps that completed).
    pub run: Vec<(String, Undo)>,
    /// Undos deliberately skipped, with the reason shown to the operator.
    pub kept: Vec<(String, String)>,
}

impl UndoPlan {
    pub fn is_empty(&self) -> bool {
        self.run.is_empty()
    }
}

/// `completed` are the steps that finished, in the order they ran.
pub fn decide(completed: &[Step], rollback: RollbackPolicy) -> UndoPlan {
    let mut plan = UndoPlan {
        run: Vec::new(),
        kept: Vec::new(),
    };
    if rollback == RollbackPolicy::Manual {
        for step in completed.iter().rev().filter(|s| s.undo() != Undo::Nothing) {
            plan.kept.push((
                step.kind().to_owned(),
                "policy.rollback: manual — left for an operator".to_owned(),
            ));
        }
        return plan;
    }
    // A rollout's canary served a share of production, even one that was aborted.
    let served = completed
        .iter()
        .any(|s| matches!(s, Step::Promote { .. } | Step::Rollout { .. }));
    for step in completed.iter().rev() {
        let undo = step.undo();
        if undo == Undo::Nothing {
            continue;
        }
        if matches!(step, Step::TakeOverPromotion { .. }) {
            plan.kept.push((
                step.kind().to_owned(),
                "auto-promotion stays off: a push to the production branch must not go live by itself".to_owned(),
            ));
            continue;
        }
        if served && step.touches_schema() {
            plan.kept.push((
                step.kind().to_owned(),
                "the new code served production, so the schema is kept (expand/contract: the old code must run on it)".to_owned(),
            ));
            continue;
        }
        plan.run.push((step.kind().to_owned(), undo));
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::{DeployReason, EnvChange};

    fn v(text: &str) -> crate::migrations::Version {
        text.parse().expect("version")
    }

    fn forward() -> Vec<Step> {
        vec![
            Step::Preflight,
            Step::Backup {
                version: Some(v("2024_01_01_001")),
            },
            Step::MigrateUp {
                from: Some(v("2024_01_01_001")),
                to: v("2024_02_01_001"),
                versions: vec![v("2024_02_01_001")],
            },
            Step::Verify {
                version: v("2024_02_01_001"),
            },
            Step::SetEnv {
                changes: Vec::<EnvChange>::new(),
            },
            Step::Deploy {
                sha: "a".repeat(40),
                reason: DeployReason::Code,
            },
            Step::WaitReady,
            Step::HealthCheck {
                path: "/".to_owned(),
                expect_status: 200,
            },
            Step::Promote {
                previous: Some("dpl_old".to_owned()),
            },
            Step::Bake {
                duration: Duration::from_secs(60),
            },
        ]
    }

    fn kinds(plan: &UndoPlan) -> Vec<&str> {
        plan.run.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_failure_before_promote_undoes_env_and_schema_in_reverse() {
        let done = &forward()[..6]; // the build failed while waiting
        let plan = decide(done, RollbackPolicy::Auto);
        assert_eq!(kinds(&plan), ["set_env", "migrate_up"]);
        assert!(plan.kept.is_empty());
    }

    #[test]
    fn a_failure_in_bake_rolls_code_and_env_back_but_keeps_the_schema() {
        let done = &forward()[..9]; // promote done, bake failed
        let plan = decide(done, RollbackPolicy::Auto);
        assert_eq!(kinds(&plan), ["promote", "set_env"]);
        assert_eq!(plan.kept.len(), 1);
        assert!(plan.kept[0].1.contains("schema is kept"));
    }

    #[test]
    fn manual_rollback_policy_undoes_nothing_and_says_so() {
        let plan = decide(&forward()[..6], RollbackPolicy::Manual);
        assert!(plan.is_empty());
        assert_eq!(plan.kept.len(), 2);
    }

    #[test]
    fn a_verify_failure_undoes_the_migrations_it_checked() {
        let plan = decide(&forward()[..3], RollbackPolicy::Auto);
        assert_eq!(
            plan.run,
            vec![(
                "migrate_up".to_owned(),
                Undo::MigrateDownTo {
                    version: Some(v("2024_01_01_001"))
                }
            )]
        );
    }
}
