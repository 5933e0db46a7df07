//! The planner: a pure function from desired and observed state to an ordered list of
//! guarded steps. No tokio, no sqlx, no reqwest here: the same inputs give the same
//! `Plan` (and the same hash) every time, which is what lets one value drive `plan`,
//! `apply --dry-run`, `apply` and the daemon, and lets table tests cover every case.

mod diff;
pub mod drift;
mod input;
pub mod interrupted;
pub mod markdown;
pub mod promotion;
pub mod rehearsal;
pub mod render;
pub mod request;
mod step;

#[cfg(test)]
mod tests;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use diff::env_changes;
pub use drift::{Drift, SchemaChange, SchemaDescription, SchemaItem};
pub use input::{
    BackupObserved, CodeObserved, Context, Deployment, Desired, DesiredEnv, Failure,
    IdentityObserved, LintSummary, Mode, Observed, ObservedEnv, Origin, RollingReleases,
    SchemaObserved,
};
pub use interrupted::{Interruption, UnfinishedBake};
pub use promotion::OutsideChange;
pub use rehearsal::{LockMode, Rehearsal, RehearsalFailure};
pub use step::{DeployReason, EnvAction, EnvChange, Guard, Step, Undo, rate};

use crate::manifest::schedule::WindowState;
use crate::manifest::{
    ApplyPolicy, BackupPolicy, DestructivePolicy, DriftPolicy, IrreversiblePolicy,
    OutsideChangePolicy,
};
use crate::migrations::{Catalog, Version};

/// How new code reaches production: a staged rollout under `policy.rollout` when the
/// project can run rolling releases, else promote + bake (the plan says which and why).
fn release_steps(
    policy: &crate::manifest::Policy,
    code: &CodeObserved,
    notes: &mut Vec<String>,
) -> Vec<Step> {
    let previous = code.production.as_ref().map(|p| p.id.clone());
    let promote_and_bake = |previous| {
        vec![
            Step::Promote { previous },
            Step::Bake {
                duration: policy.bake,
            },
        ]
    };
    let Some(rollout) = &policy.rollout else {
        return promote_and_bake(previous);
    };
    if let RollingReleases::Unavailable { reason } = &code.rolling_releases {
        notes.push(format!(
            "policy.rollout is set but rolling releases are unavailable for this project ({reason}): promote + bake runs instead"
        ));
        return promote_and_bake(previous);
    }
    if previous.is_none() {
        notes.push(
            "policy.rollout is set but nothing serves production yet, so there is no traffic to shift: promote + bake runs instead".to_owned(),
        );
        return promote_and_bake(previous);
    }
    vec![Step::Rollout {
        previous,
        stages: rollout.stages.clone(),
        analysis: rollout.analysis.clone(),
    }]
}

/// The note an urgent plan carries, in the plan and in the before-update notification.
pub const URGENT: &str = "maintenance window bypassed: urgent";

/// One client's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub client: String,
    /// The command the plan carries out: `apply` (converge to the manifest: `plan`,
    /// `apply`, the daemon) or an operator's request (`backup`, `restore`, `pause`…, see
    /// [`request`]). Its run is recorded under this name.
    #[serde(skip_serializing_if = "is_apply")]
    pub command: String,
    pub steps: Vec<Step>,
    pub changes: Changes,
    /// Reasons the plan may not run now (it will later, untouched).
    pub holds: Vec<Hold>,
    /// Reasons the plan cannot run until someone changes something.
    pub blocks: Vec<Block>,
    /// Lint findings of the migrations this plan runs.
    pub lint: Vec<String>,
    /// Notes a reviewer should read (e.g. sensitive values re-applied from the manifest).
    pub notes: Vec<String>,
    /// The rehearsal of this plan's migrations on a scratch copy, when one ran. Not in
    /// the hash: its timings differ from run to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<Rehearsal>,
    /// How the live schema drifted from the recorded one (a block or, under
    /// `policy.drift: warn`, a warning).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<SchemaChange>,
    /// The newest run stopped half-way (also in `notes`, in words). Not in the hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interruption>,
    /// Production runs a commit steward did not promote (held or reverted per
    /// `policy.outsideChange`). Not in the hash, like every observation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_change: Option<OutsideChange>,
    /// sha256 over the steps and the inputs that matter, first 16 hex characters.
    pub hash: String,
    /// What the manifest asks for, whatever is live: see [`release`]. A failure is
    /// remembered by it, so the same release is not tried again after a half-undone
    /// failure changed the plan.
    pub release: String,
}

fn is_apply(command: &str) -> bool {
    command == APPLY
}

/// The command of a converge plan.
pub const APPLY: &str = "apply";

/// What changes, old → new, for summaries and PR comments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub code: Option<(Option<String>, String)>,
    /// The manifest's version when it is a tag, shown beside the sha it resolved to.
    pub tag: Option<String>,
    pub schema: Option<(Option<Version>, Version)>,
    pub env: Vec<EnvChange>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.code.is_none() && self.schema.is_none() && self.env.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hold {
    Suspended,
    OutsideWindow {
        client: String,
        next_open: Option<DateTime<Utc>>,
    },
    /// `policy.apply: manual`: an operator approves this plan by its hash.
    AwaitingApproval {
        client: String,
        plan_hash: String,
    },
    /// This release (same code, schema and env) failed before.
    Failed {
        client: String,
        step: String,
        error: String,
        at: DateTime<Utc>,
    },
    Wave {
        reason: String,
    },
    /// The project is paused (`steward pause`): its health checks could only fail.
    Paused {
        client: String,
    },
    /// Production moved to a commit steward did not promote, under
    /// `policy.outsideChange: hold`: nothing is deployed until an operator decides.
    OutsideChange {
        client: String,
        change: OutsideChange,
    },
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Suspended => f.write_str("suspended (spec.suspend: true)"),
            Hold::OutsideWindow { client, next_open } => {
                f.write_str("outside the maintenance window")?;
                if let Some(at) = next_open {
                    write!(f, "; next opens {}", at.format("%Y-%m-%d %H:%M UTC"))?;
                }
                write!(
                    f,
                    "; to start now anyway: `steward apply {client} --ignore-window`"
                )
            }
            Hold::AwaitingApproval { client, plan_hash } => write!(
                f,
                "awaiting approval: run `steward apply {client} --plan-hash {plan_hash}` (policy.apply: manual)"
            ),
            Hold::Failed {
                client,
                step,
                error,
                at,
            } => write!(
                f,
                "this release failed at {step} on {}: {error}; change the manifest or `steward retry {client}`",
                at.format("%Y-%m-%d %H:%M UTC")
            ),
            Hold::Wave { reason } => write!(f, "waiting for an earlier wave: {reason}"),
            Hold::Paused { client } => write!(
                f,
                "traffic is paused (steward pause); updates wait for steward unpause {client}"
            ),
            Hold::OutsideChange { client, change } => write!(
                f,
                "{change}; held (policy.outsideChange: hold): to keep it, pin spec.code.version to {}; to put the manifest's commit back, `steward apply {client} --revert-outside-change`",
                change.sha.as_deref().unwrap_or("the live commit")
            ),
        }
    }
}

impl Hold {
    /// The command that releases this hold now, when one does (approve, override, retry);
    /// the others pass by themselves or by a manifest change.
    pub fn command(&self) -> Option<String> {
        match self {
            Hold::OutsideWindow { client, .. } => {
                Some(format!("steward apply {client} --ignore-window"))
            }
            Hold::AwaitingApproval { client, plan_hash } => {
                Some(format!("steward apply {client} --plan-hash {plan_hash}"))
            }
            Hold::Failed { client, .. } => Some(format!("steward retry {client}")),
            Hold::Paused { client } => Some(format!("steward unpause {client}")),
            Hold::OutsideChange { client, .. } => {
                Some(format!("steward apply {client} --revert-outside-change"))
            }
            Hold::Suspended | Hold::Wave { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Block {
    /// The database is not this client's (or not adopted).
    Identity { reason: String },
    /// A crash left a migration `failed` or `in_progress`.
    Unfinished {
        client: String,
        version: Version,
        status: String,
    },
    /// An applied migration's file changed since it ran.
    ChecksumMismatch {
        version: Version,
        recorded: String,
        on_disk: String,
    },
    /// The database is at a version the migrations folder does not have.
    UnknownVersion { version: Version },
    /// A destructive statement under `policy.destructive: deny`.
    Destructive { version: Version, finding: String },
    /// A downgrade through a migration without `.down.sql`.
    Irreversible { version: Version },
    /// `BEGIN`, `COMMIT`, `SAVEPOINT`... in a script steward runs in its own transaction.
    TransactionControl { version: Version, finding: String },
    /// The live schema differs from the one recorded after the last run (`policy.drift:
    /// block`).
    Drift { changes: Vec<SchemaChange> },
    /// The rehearsal on a scratch copy failed.
    RehearsalFailed { failure: RehearsalFailure },
    /// The rehearsal held ACCESS EXCLUSIVE on an existing table longer than
    /// `policy.maxLockTime`.
    LockTooLong {
        version: Version,
        tables: Vec<String>,
        held_ms: u64,
        limit_ms: u64,
    },
    /// The backup a restore would read is another client's, or changed since it was
    /// taken, or has no dump.
    Backup { reason: String },
    /// `repair` may not touch this row (see `postgres::repair`).
    Repair { reason: String },
    /// `adopt --baseline` would record versions the database does not show (see
    /// `postgres::baseline`).
    Baseline { reason: String },
    /// `rollback --code` has nowhere to go.
    NoPreviousDeployment { client: String },
    /// `migrate` refused by the run's own judge (`postgres::path`): unfinished or edited
    /// rows, a down run through a migration without `.down.sql`, transaction control.
    Run { reason: String },
    /// The Vercel project puts every production build live by itself
    /// (`autoAssignCustomDomains`), and steward was not told to take that over.
    AutoPromotion { client: String },
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Block::Identity { reason } => write!(f, "wrong database: {reason}"),
            Block::Unfinished {
                client,
                version,
                status,
            } => write!(
                f,
                "migration {version} is `{status}` after an interrupted run; inspect the database, then `steward repair {client} --version {version} --mark applied|rolled-back`"
            ),
            Block::ChecksumMismatch {
                version,
                recorded,
                on_disk,
            } => write!(
                f,
                "applied migration {version} was edited: recorded checksum {recorded}, file now {on_disk}; add a new migration instead"
            ),
            Block::UnknownVersion { version } => {
                write!(
                    f,
                    "the database is at {version}, which is not in the migrations folder"
                )
            }
            Block::Destructive { version, finding } => write!(
                f,
                "migration {version} is destructive ({finding}); set policy.destructive: allow to run it"
            ),
            // The finding names file and line, and says what to do.
            Block::TransactionControl { version, finding } => {
                write!(
                    f,
                    "migration {version} controls its own transaction: {finding}"
                )
            }
            Block::Irreversible { version } => write!(
                f,
                "migration {version} has no .down.sql, so the downgrade cannot run; restore a backup with `steward restore`, or set policy.irreversible: restore (it needs a backup taken at the target version)"
            ),
            Block::Drift { changes } => write!(
                f,
                "the schema was changed outside steward since the last run: {}; put it back, or review it and run `steward drift accept`",
                changes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Block::RehearsalFailed { failure } => {
                write!(f, "the rehearsal on a scratch copy failed: {failure}")
            }
            Block::LockTooLong {
                version,
                tables,
                held_ms,
                limit_ms,
            } => write!(
                f,
                "migration {version} held ACCESS EXCLUSIVE on {} for {} in the rehearsal (policy.maxLockTime {}); reads and writes of that table wait that long in production — split the migration, or run it in a quieter window with a higher limit",
                tables.join(", "),
                millis(*held_ms),
                millis(*limit_ms)
            ),
            Block::Backup { reason }
            | Block::Repair { reason }
            | Block::Baseline { reason }
            | Block::Run { reason } => f.write_str(reason),
            Block::NoPreviousDeployment { client } => write!(
                f,
                "client {client}: no previous production deployment is known; pass --to DEPLOYMENT"
            ),
            Block::AutoPromotion { client } => f.write_str(&promotion::risk(client)),
        }
    }
}

/// `1.25 s`, `300 ms`.
pub fn millis(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// How a plan stands, for exit codes and PR statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing to do.
    Converged,
    /// Changes that will run (now or when holds clear).
    Changes,
    /// Changes that cannot run until someone intervenes.
    Blocked,
}

impl Plan {
    pub fn outcome(&self) -> Outcome {
        if !self.blocks.is_empty() {
            Outcome::Blocked
        } else if self.steps.is_empty() {
            Outcome::Converged
        } else {
            Outcome::Changes
        }
    }

    /// Whether the executor may start it now.
    pub fn runnable(&self) -> bool {
        self.blocks.is_empty() && self.holds.is_empty() && !self.steps.is_empty()
    }

    /// Whether code reaches production in this plan (so a later failure must roll it back).
    pub fn promotes(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Promote { .. }))
    }
}

/// Plan one client. Pure: everything it needs is an argument.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    catalog: &Catalog,
    lint: &dyn Fn(&Version) -> LintSummary,
    ctx: &Context,
) -> Plan {
    let config = &desired.config;
    let policy = &config.policy;
    let mut blocks = Vec::new();
    let mut lint_lines = Vec::new();
    let mut notes = Vec::new();

    // Schema: guards on what is applied, then the direction of travel.
    let schema = &observed.schema;
    blocks.extend(identity_block(&config.name, &schema.identity));
    blocks.extend(row_blocks(
        &config.name,
        catalog,
        &schema.applied,
        &schema.unfinished,
    ));

    let drift_changes = drift::changes(schema.drift.as_ref());
    if !drift_changes.is_empty() {
        match policy.drift {
            DriftPolicy::Block => blocks.push(Block::Drift {
                changes: drift_changes.clone(),
            }),
            DriftPolicy::Warn => notes.push(format!(
                "the schema was changed outside steward (policy.drift: warn, so the plan runs anyway): {}",
                drift_changes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }

    // Who promotes: a project that puts every push live by itself is a block until
    // steward takes that over (by policy here, as a step; or by `adopt`).
    if promotion::auto_promotes(desired, observed) {
        blocks.push(Block::AutoPromotion {
            client: config.name.clone(),
        });
    }
    let take_over = observed.code.auto_promote && policy.take_over_promotion;
    let outside_change = promotion::outside_change(desired, observed);

    let target = &config.database.schema_version;
    let current = schema.current.clone();
    let mut schema_steps = Vec::new();
    let mut schema_change = None;
    let destructive_ok = policy.destructive == DestructivePolicy::Allow;
    if current.as_ref() != Some(target) {
        schema_change = Some((current.clone(), target.clone()));
        let upgrade = current.as_ref().is_none_or(|c| c < target);
        if upgrade {
            let versions: Vec<Version> = catalog
                .between(current.as_ref(), target)
                .into_iter()
                .map(|m| m.version.clone())
                .collect();
            for v in &versions {
                let summary = lint(v);
                for finding in &summary.destructive_up {
                    lint_lines.push(format!("{v}: destructive: {finding}"));
                    if !destructive_ok {
                        blocks.push(Block::Destructive {
                            version: v.clone(),
                            finding: finding.clone(),
                        });
                    }
                }
                lint_lines.extend(summary.warnings.iter().map(|w| format!("{v}: {w}")));
                for finding in summary.transaction_control_up {
                    lint_lines.push(format!("{v}: error: {finding}"));
                    blocks.push(Block::TransactionControl {
                        version: v.clone(),
                        finding,
                    });
                }
            }
            if let Some(rehearsal) = &observed.rehearsal {
                blocks.extend(rehearsal::blocks(rehearsal, policy.max_lock_time));
            }
            schema_steps.push(Step::MigrateUp {
                from: current.clone(),
                to: target.clone(),
                versions,
            });
        } else if let Some(from) = current.clone() {
            let mut versions: Vec<Version> = catalog
                .migrations
                .iter()
                .filter(|m| &m.version > target && m.version <= from)
                .map(|m| m.version.clone())
                .collect();
            versions.reverse();
            let irreversible: Vec<&Version> = versions
                .iter()
                .filter(|v| catalog.get(v).is_some_and(|m| !m.is_reversible()))
                .collect();
            // Under `policy.irreversible: restore`, the latest backup stands in for the down
            // migrations when it was taken at exactly the target version.
            let restore = match (irreversible.first(), policy.irreversible) {
                (Some(_), IrreversiblePolicy::Restore) => observed
                    .schema
                    .last_backup
                    .as_ref()
                    .filter(|b| b.version.as_ref() == Some(target)),
                _ => None,
            };
            if restore.is_none() {
                for v in &irreversible {
                    blocks.push(Block::Irreversible {
                        version: (*v).clone(),
                    });
                }
            }
            // A restore runs no down migration, so their lint does not apply to it.
            for v in versions.iter().filter(|_| restore.is_none()) {
                let summary = lint(v);
                for finding in summary.transaction_control_down {
                    lint_lines.push(format!("{v} (down): error: {finding}"));
                    blocks.push(Block::TransactionControl {
                        version: v.clone(),
                        finding,
                    });
                }
                for finding in summary.destructive_down {
                    lint_lines.push(format!("{v} (down): destructive: {finding}"));
                    if !destructive_ok {
                        blocks.push(Block::Destructive {
                            version: v.clone(),
                            finding,
                        });
                    }
                }
            }
            match restore {
                Some(backup) => {
                    notes.push(format!(
                        "{} has no .down.sql: the downgrade restores backup {} (taken {}), and every write since then is discarded",
                        irreversible.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                        backup.id,
                        backup.created_at.format("%Y-%m-%d %H:%M UTC")
                    ));
                    schema_steps.push(Step::RestoreBackup {
                        backup: backup.id.clone(),
                        version: target.clone(),
                    });
                }
                None => schema_steps.push(Step::MigrateDown {
                    from,
                    to: target.clone(),
                    versions,
                }),
            }
        }
        schema_steps.push(Step::Verify {
            version: target.clone(),
        });
    }

    // Env and code.
    let env = env_changes(&desired.env, &observed.env);
    if env
        .iter()
        .any(|c| c.sensitive && c.action == EnvAction::Change)
    {
        notes.push(
            "sensitive values cannot be read back from Vercel: if this update is undone, they are re-applied from the secret reference the previous revision wrote them from (recorded with each variable), provided steward's environment still holds that value".to_owned(),
        );
    }
    let production = observed.code.production.as_ref();
    let code_changed = production.and_then(|p| p.sha.as_deref()) != Some(desired.sha.as_str());
    let reason = match (code_changed, !env.is_empty()) {
        (true, true) => Some(DeployReason::CodeAndEnv),
        (true, false) => Some(DeployReason::Code),
        (false, true) => Some(DeployReason::Env),
        (false, false) => None,
    };
    let mut code_steps = Vec::new();
    if !env.is_empty() {
        code_steps.push(Step::SetEnv {
            changes: env.clone(),
        });
    }
    if let Some(reason) = reason {
        code_steps.extend([
            Step::Deploy {
                sha: desired.sha.clone(),
                reason,
            },
            Step::WaitReady,
            Step::HealthCheck {
                path: policy.health.path.clone(),
                expect_status: policy.health.expect_status,
            },
        ]);
        code_steps.extend(release_steps(policy, &observed.code, &mut notes));
    }

    // A bake that never finished on the build that is still production runs again (when
    // nothing newer is about to replace it).
    if let Some(interrupted) = &observed.request_interrupted {
        notes.push(interrupted.to_string());
    }
    if let Some(interrupted) = &observed.interrupted {
        notes.push(interrupted.to_string());
        if let Some(bake) = &interrupted.unfinished_bake
            && code_steps.is_empty()
            && production.is_some_and(|p| p.id == bake.deployment)
            && !policy.bake.is_zero()
        {
            code_steps.push(Step::Rebake {
                deployment: bake.deployment.clone(),
                previous: bake.previous.clone(),
                duration: policy.bake,
            });
        }
    }

    // Order: forward = schema before code (expand first); downgrade = code before schema.
    let mut steps = Vec::new();
    if !schema_steps.is_empty() || !code_steps.is_empty() || take_over {
        steps.push(Step::Preflight);
        // First: from here on a push to the production branch cannot go live while the
        // rest of the plan (migrations included) runs.
        if take_over {
            // The production found is steward's to answer for only when steward has
            // none on record: a take-over never adopts an outside change.
            steps.push(Step::TakeOverPromotion {
                production: production
                    .filter(|_| observed.code.promoted_by_steward.is_empty())
                    .map(|p| p.id.clone()),
            });
        }
        let downgrade = matches!(
            schema_steps.first(),
            Some(Step::MigrateDown { .. } | Step::RestoreBackup { .. })
        );
        let backup = !schema_steps.is_empty() && policy.backup == BackupPolicy::Required;
        if backup {
            steps.push(Step::Backup {
                version: current.clone(),
            });
        }
        if downgrade {
            steps.extend(code_steps);
            steps.extend(schema_steps);
        } else {
            steps.extend(schema_steps);
            steps.extend(code_steps);
        }
        steps.push(Step::Record);
    }
    if policy.backup == BackupPolicy::Skip && schema_change.is_some() {
        notes.push("policy.backup: skip — no backup is taken before migrating".to_owned());
    }

    let changes = Changes {
        code: code_changed.then(|| (production.and_then(|p| p.sha.clone()), desired.sha.clone())),
        tag: match &desired.version {
            crate::manifest::CodeVersion::Tag(tag) => Some(tag.clone()),
            crate::manifest::CodeVersion::Sha(_) => None,
        },
        schema: schema_change,
        env,
    };
    let hash = hash(
        &config.name,
        &steps,
        &changes,
        desired,
        &scripts_run(&steps, catalog),
    );

    let release = release(desired, catalog);
    let mut holds = Vec::new();
    if !steps.is_empty() {
        if config.suspend {
            holds.push(Hold::Suspended);
        }
        if let WindowState::Closed { next_open } = config.schedule.state(ctx.now) {
            if ctx.mode.ignores_window() {
                notes.push(
                    "maintenance window ignored (--ignore-window): the change starts outside it, recorded with who ran it".to_owned(),
                );
            } else {
                holds.push(Hold::OutsideWindow {
                    client: config.name.clone(),
                    next_open,
                });
            }
        }
        if config.schedule.urgent && !config.schedule.windows.is_empty() {
            notes.push(URGENT.to_owned());
        }
        // Shown in every mode, so the plan a reviewer reads says what approves it; only
        // the operator's `--plan-hash` of this very plan releases it.
        if config.policy.apply == ApplyPolicy::Manual && !ctx.mode.approves(&hash) {
            holds.push(Hold::AwaitingApproval {
                client: config.name.clone(),
                plan_hash: hash.clone(),
            });
        }
        if let Some(failure) = observed
            .failure
            .as_ref()
            .filter(|f| f.is_of(&release, &hash))
        {
            holds.push(Hold::Failed {
                client: config.name.clone(),
                step: failure.step.clone(),
                error: failure.error.clone(),
                at: failure.at,
            });
        }
        if observed.code.paused {
            holds.push(Hold::Paused {
                client: config.name.clone(),
            });
        }
        if let Some(change) = &outside_change {
            match (change.policy, ctx.mode.reverts_outside_change()) {
                (OutsideChangePolicy::Hold, false) => holds.push(Hold::OutsideChange {
                    client: config.name.clone(),
                    change: change.clone(),
                }),
                (OutsideChangePolicy::Hold, true) => notes.push(format!(
                    "{change}; reverted to the manifest's commit (--revert-outside-change)"
                )),
                (OutsideChangePolicy::Revert, _) => notes.push(format!(
                    "{change}; reverted to the manifest's commit (policy.outsideChange: revert)"
                )),
            }
        }
        if let Some(reason) = &ctx.wave_blocked {
            holds.push(Hold::Wave {
                reason: reason.clone(),
            });
        }
    }
    blocks.dedup();
    Plan {
        client: config.name.clone(),
        command: APPLY.to_owned(),
        steps,
        changes,
        holds,
        blocks,
        lint: lint_lines,
        notes,
        rehearsal: observed.rehearsal.clone(),
        drift: drift_changes,
        interrupted: observed.interrupted.clone(),
        outside_change,
        hash,
        release,
    }
}

/// The release the manifest asks for, as 16 hex characters: the client, the commit, the
/// target schema version with the checksum of every migration up to it, and the env
/// fingerprints. Unlike the plan hash it does not depend on what is live, so a failure
/// that left part of a release in place (a bake that failed after the schema was kept) is
/// still recognised; and fixing a failed migration file is a new release.
pub fn release(desired: &Desired, catalog: &Catalog) -> String {
    let target = &desired.config.database.schema_version;
    let migrations: Vec<_> = catalog
        .migrations
        .iter()
        .filter(|m| &m.version <= target)
        .map(|m| {
            serde_json::json!([
                m.version,
                m.up.checksum,
                m.down.as_ref().map(|s| &s.checksum),
                m.verify.as_ref().map(|s| &s.checksum),
            ])
        })
        .collect();
    let input = serde_json::json!({
        "client": desired.config.name,
        "sha": desired.sha,
        "schema": target,
        "migrations": migrations,
        "env": desired.env,
    });
    let digest = Sha256::digest(input.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// The identity refusal of a database that is not this client's: one wording for the
/// converge plan and every request's plan.
pub fn identity_block(client: &str, identity: &IdentityObserved) -> Option<Block> {
    let reason = match identity {
        IdentityObserved::Matches => return None,
        IdentityObserved::NotAdopted => {
            format!("the database is not adopted; run `steward adopt {client}`")
        }
        IdentityObserved::OtherClient(other) => {
            format!("the database belongs to client `{other}`, not `{client}`")
        }
        IdentityObserved::PinnedMismatch { pinned, found } => {
            format!("its identity is {found}, but the manifest pins {pinned}")
        }
    };
    Some(Block::Identity { reason })
}

/// What the recorded rows forbid, for every write: a `failed` or `in_progress` row (a
/// crash), an applied version missing from the folder, an applied migration edited since
/// it ran. The one judge of these, used by `plan`, `preflight` and the migration runner
/// under its lock (`postgres::path::check_rows`), so they refuse in the same words.
pub fn row_blocks(
    client: &str,
    catalog: &Catalog,
    applied: &[(Version, Option<String>)],
    unfinished: &[(Version, String)],
) -> Vec<Block> {
    let mut blocks: Vec<Block> = unfinished
        .iter()
        .map(|(version, status)| Block::Unfinished {
            client: client.to_owned(),
            version: version.clone(),
            status: status.clone(),
        })
        .collect();
    for (version, recorded) in applied {
        match (catalog.get(version), recorded) {
            (None, _) => blocks.push(Block::UnknownVersion {
                version: version.clone(),
            }),
            (Some(m), Some(recorded)) if *recorded != m.up.checksum => {
                blocks.push(Block::ChecksumMismatch {
                    version: version.clone(),
                    recorded: recorded.clone(),
                    on_disk: m.up.checksum.clone(),
                })
            }
            _ => {}
        }
    }
    blocks
}

/// A stable hash: the client, the steps (which embed versions, shas, env fingerprints and
/// the previous deployment), the manifest's code version and the checksum of every SQL
/// file the plan may run. Holds are not in it: a plan reviewed outside its window is the
/// same plan inside it. The checksums are what make `--plan-hash` pin the SQL a reviewer
/// read, not only its version numbers: a pending migration edited after review is a
/// different plan.
fn hash(
    client: &str,
    steps: &[Step],
    changes: &Changes,
    desired: &Desired,
    scripts: &[(String, String)],
) -> String {
    let input = serde_json::json!({
        "client": client,
        "steps": steps,
        "changes": changes,
        "version": desired.version,
        "scripts": scripts,
    });
    let digest = Sha256::digest(input.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// `(file, sha256)` of every SQL file the steps may run, in step order: the `.up.sql`,
/// `.down.sql` (the undo of an upgrade, or the downgrade itself) and `.verify.sql` of each
/// migration on a migrate path, and the `.verify.sql` of every migration up to a verified
/// version (the verify step runs them all).
fn scripts_run(steps: &[Step], catalog: &Catalog) -> Vec<(String, String)> {
    fn file(
        m: &crate::migrations::Migration,
        kind: &str,
        script: &crate::migrations::Script,
    ) -> (String, String) {
        (format!("{}.{kind}", m.version), script.checksum.clone())
    }
    let mut scripts = Vec::new();
    for step in steps {
        match step {
            Step::MigrateUp { versions, .. } | Step::MigrateDown { versions, .. } => {
                for m in versions.iter().filter_map(|v| catalog.get(v)) {
                    scripts.push(file(m, "up", &m.up));
                    scripts.extend(m.down.iter().map(|s| file(m, "down", s)));
                    scripts.extend(m.verify.iter().map(|s| file(m, "verify", s)));
                }
            }
            Step::Verify { version } => {
                for m in catalog.migrations.iter().filter(|m| &m.version <= version) {
                    scripts.extend(m.verify.iter().map(|s| file(m, "verify", s)));
                }
            }
            _ => {}
        }
    }
    scripts
}
