//! Steps: one guarded, reversible action each. A step carries, as data, the guard that is
//! checked right before it runs and the undo that is recorded before it runs, so a plan
//! can show both and the executor cannot forget either.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::manifest::{Analysis, InsufficientTraffic, RolloutStage, duration};
use crate::migrations::Version;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// Connection, identity, checksums, no unfinished rows, lock: refuses before any write.
    Preflight,
    /// pg_dump of the current schema version, checked readable before it counts.
    Backup { version: Option<Version> },
    /// Apply `.up.sql` files (all in one transaction when every one allows it).
    MigrateUp {
        from: Option<Version>,
        to: Version,
        versions: Vec<Version>,
    },
    /// Run `.down.sql` files in reverse.
    MigrateDown {
        from: Version,
        to: Version,
        versions: Vec<Version>,
    },
    /// Restore a backup taken at `version` (a downgrade through an irreversible migration
    /// under `policy.irreversible: restore`).
    RestoreBackup { backup: String, version: Version },
    /// Version matches, verify files and checks return true, RLS active.
    Verify { version: Version },
    /// Write every env change before any build starts.
    SetEnv { changes: Vec<EnvChange> },
    /// Build the commit on Vercel (a new deployment, so env changes take effect).
    Deploy { sha: String, reason: DeployReason },
    /// Wait until the build is READY.
    WaitReady,
    /// Request the deployment's health path before it gets traffic.
    HealthCheck { path: String, expect_status: u16 },
    /// Point production at the new deployment.
    Promote { previous: Option<String> },
    /// Shift production traffic to the new deployment in stages (Vercel's rolling
    /// release), judging the canary at each on its 5xx rate and health; a bad stage
    /// aborts (all traffic back to `previous` at once).
    Rollout {
        previous: Option<String>,
        stages: Vec<RolloutStage>,
        analysis: Analysis,
    },
    /// Health-check production for a while; a failure rolls back.
    Bake {
        #[serde(serialize_with = "as_duration")]
        duration: Duration,
    },
    /// Health-check production again for a while: the bake of this deployment never
    /// finished (the process died, or a transient failure stopped it). A failure undoes
    /// that run's promote.
    Rebake {
        deployment: String,
        previous: Option<String>,
        #[serde(serialize_with = "as_duration")]
        duration: Duration,
    },
    /// Turn off the project's auto-assignment of production domains
    /// (`policy.takeOverPromotion`), so a push to the production branch builds staged
    /// and only steward's promote puts code live. `production` is what serves now, when
    /// steward has no production on record: it is recorded as the one steward answers for.
    TakeOverPromotion { production: Option<String> },
    /// Write the update record.
    Record,
    /// Stop the project's traffic (Vercel's pause: every deployment answers 503).
    Pause { project: String },
    /// Let the project's traffic through again.
    Unpause { project: String },
    /// Restore a backup chosen by hand (`steward restore`), checked before it is read.
    Restore {
        backup: String,
        version: Option<Version>,
    },
    /// Settle a `system_versions` row an interrupted run left `in_progress` or `failed`.
    Repair {
        version: Version,
        was: String,
        mark: String,
    },
    /// Point production back at an earlier deployment (Vercel's instant rollback).
    #[serde(rename = "rollback")]
    CodeRollback { from: Option<String>, to: String },
    /// Clear the Failed state so the same release may run again (`steward retry`).
    #[serde(rename = "retry")]
    ClearFailure { plan_hash: String, step: String },
    /// Mark the database as this client's (`steward adopt`): write `steward_identity`.
    Adopt,
    /// Record versions up to `version` as applied on a database migrated by hand
    /// (`steward adopt --baseline`), every `.verify.sql` up to it having passed.
    Baseline {
        version: Version,
        /// The versions recorded, each with its checksum.
        record: Vec<Version>,
        /// Of `record`, how many a `.verify.sql` confirmed.
        confirmed: usize,
        /// Versions up to the baseline already recorded, kept as they are.
        kept: usize,
    },
    /// Record the live schema as the reference drift is measured against: once at
    /// `adopt`, or by `steward drift accept` after a person reviewed `accepted`.
    SchemaReference {
        version: Option<Version>,
        accepted: Vec<String>,
    },
}

fn as_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration::format(*d))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployReason {
    /// The commit differs from production.
    Code,
    /// Same commit, but env changed: Vercel applies env only to new deployments.
    Env,
    /// Both.
    CodeAndEnv,
}

/// One env variable's change. Values never appear: only fingerprints, and for sensitive
/// values not even those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvChange {
    pub key: String,
    pub action: EnvAction,
    pub sensitive: bool,
    /// Short keyed fingerprints, old → new (omitted for sensitive values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Why: the manifest changed, or someone changed it in the dashboard.
    pub drift: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvAction {
    Add,
    Change,
    Remove,
}

/// The precondition checked right before a step (like a JSON-patch `test` before `remove`):
/// if the world moved since the plan was made, the step refuses instead of clobbering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Guard {
    None,
    /// The database is this client's, under steward's lock.
    Identity,
    /// The schema is still at this version.
    SchemaAt {
        version: Option<Version>,
    },
    /// The env still has the fingerprints that were observed.
    EnvUnchanged,
    /// Production is still this deployment.
    ProductionIs {
        deployment: Option<String>,
    },
    /// The project's traffic is still paused (or still serving), as observed.
    Traffic {
        paused: bool,
    },
    /// The backup is still this client's and unchanged since it was taken (sidecar,
    /// SHA-256), and the database is this client's.
    BackupIntact {
        backup: String,
    },
    /// The row is still one an interrupted run left unfinished.
    RowUnfinished {
        version: Version,
    },
    /// The database is not adopted, by this client or any other.
    NotAdopted,
    /// The rows and every `.verify.sql` up to the baseline still say what was planned.
    BaselineHolds {
        version: Version,
    },
    /// The live schema still differs from the reference by exactly what was shown.
    DriftIs {
        changes: Vec<String>,
    },
}

/// What undoes a step, recorded before the step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Undo {
    /// Nothing to undo (reads, or artefacts that are harmless to leave).
    Nothing,
    /// Run down migrations back to this version.
    MigrateDownTo { version: Option<Version> },
    /// Re-apply these migrations (undo of a downgrade).
    MigrateUpTo { version: Version },
    /// Put the previous env values back (sensitive ones from the manifest revision they came from).
    RestoreEnv,
    /// Promote the previous production deployment again.
    PromotePrevious { deployment: Option<String> },
    /// Restore the backup this run took before it restored an older one.
    RestoreTakenBackup,
    /// Let traffic through again (the undo of a pause).
    Unpause,
    /// Stop traffic again (the undo of an unpause).
    Pause,
    /// Abort the rolling release if it still runs (traffic back to `previous` at once),
    /// or, once it completed, put `previous` back in production.
    AbortRollout { previous: Option<String> },
    /// Turn the project's auto-assignment of production domains back on.
    RestoreAutoPromotion,
    /// Remove the identity this run wrote: the database is not adopted again.
    ForgetIdentity,
}

impl Step {
    pub fn guard(&self) -> Guard {
        match self {
            Step::Preflight | Step::Record | Step::Bake { .. } | Step::WaitReady => Guard::None,
            Step::Backup { .. } => Guard::Identity,
            Step::MigrateUp { from, .. } => Guard::SchemaAt {
                version: from.clone(),
            },
            Step::MigrateDown { from, .. } => Guard::SchemaAt {
                version: Some(from.clone()),
            },
            Step::RestoreBackup { .. } => Guard::Identity,
            Step::Verify { version } => Guard::SchemaAt {
                version: Some(version.clone()),
            },
            Step::SetEnv { .. } => Guard::EnvUnchanged,
            Step::TakeOverPromotion { .. } => Guard::None,
            Step::Deploy { .. } | Step::HealthCheck { .. } => Guard::None,
            Step::Promote { previous } | Step::Rollout { previous, .. } => Guard::ProductionIs {
                deployment: previous.clone(),
            },
            Step::Rebake { deployment, .. } => Guard::ProductionIs {
                deployment: Some(deployment.clone()),
            },
            Step::Pause { .. } => Guard::Traffic { paused: false },
            Step::Unpause { .. } => Guard::Traffic { paused: true },
            Step::Restore { backup, .. } => Guard::BackupIntact {
                backup: backup.clone(),
            },
            Step::Repair { version, .. } => Guard::RowUnfinished {
                version: version.clone(),
            },
            Step::CodeRollback { from, .. } => Guard::ProductionIs {
                deployment: from.clone(),
            },
            Step::ClearFailure { .. } => Guard::None,
            Step::Adopt => Guard::NotAdopted,
            Step::Baseline { version, .. } => Guard::BaselineHolds {
                version: version.clone(),
            },
            Step::SchemaReference { accepted, .. } => Guard::DriftIs {
                changes: accepted.clone(),
            },
        }
    }

    pub fn undo(&self) -> Undo {
        match self {
            Step::MigrateUp { from, .. } => Undo::MigrateDownTo {
                version: from.clone(),
            },
            Step::MigrateDown { from, .. } => Undo::MigrateUpTo {
                version: from.clone(),
            },
            Step::RestoreBackup { .. } => Undo::RestoreTakenBackup,
            Step::SetEnv { .. } => Undo::RestoreEnv,
            Step::Rollout { previous, .. } => Undo::AbortRollout {
                previous: previous.clone(),
            },
            Step::TakeOverPromotion { .. } => Undo::RestoreAutoPromotion,
            Step::Promote { previous } | Step::Rebake { previous, .. } => Undo::PromotePrevious {
                deployment: previous.clone(),
            },
            Step::CodeRollback { from, .. } => Undo::PromotePrevious {
                deployment: from.clone(),
            },
            Step::Pause { .. } => Undo::Unpause,
            Step::Unpause { .. } => Undo::Pause,
            Step::Adopt => Undo::ForgetIdentity,
            // Checks change nothing; a backup on disk and a build that never served are
            // harmless to leave; the record is the history itself.
            Step::Preflight
            | Step::Backup { .. }
            | Step::Verify { .. }
            | Step::Deploy { .. }
            | Step::WaitReady
            | Step::HealthCheck { .. }
            | Step::Bake { .. }
            | Step::Record => Undo::Nothing,
            // A restore by hand runs in one transaction (a failed one changed nothing),
            // and what it replaced was the operator's to keep: `steward backup` first.
            // A repair and a retry only say what happened; their record is the history.
            Step::Restore { .. } | Step::Repair { .. } | Step::ClearFailure { .. } => Undo::Nothing,
            // A baseline is written in one transaction (a failed one recorded nothing) and
            // only states what its `.verify.sql` files showed; a schema reference records
            // what is live. Both are true whatever fails after them, and are the last
            // writes of their plans.
            Step::Baseline { .. } | Step::SchemaReference { .. } => Undo::Nothing,
        }
    }

    /// A short name for records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::Backup { .. } => "backup",
            Step::MigrateUp { .. } => "migrate_up",
            Step::MigrateDown { .. } => "migrate_down",
            Step::RestoreBackup { .. } => "restore",
            Step::Verify { .. } => "verify",
            Step::SetEnv { .. } => "set_env",
            Step::Deploy { .. } => "deploy",
            Step::WaitReady => "wait_ready",
            Step::HealthCheck { .. } => "health_check",
            Step::Promote { .. } => "promote",
            Step::Rollout { .. } => "rollout",
            Step::Bake { .. } => "bake",
            Step::Rebake { .. } => "rebake",
            Step::TakeOverPromotion { .. } => "take_over_promotion",
            Step::Record => "record",
            Step::Pause { .. } => "pause",
            Step::Unpause { .. } => "unpause",
            Step::Restore { .. } => "restore",
            Step::Repair { .. } => "repair",
            Step::CodeRollback { .. } => "rollback",
            Step::ClearFailure { .. } => "retry",
            Step::Adopt => "adopt",
            Step::Baseline { .. } => "baseline",
            Step::SchemaReference { .. } => "schema_reference",
        }
    }

    /// Whether the step changes something (the schema, Vercel, a backup on disk), as
    /// opposed to checking what an earlier step changed. A closing maintenance window
    /// stops a plan only before a change: a change is always followed by its checks.
    pub fn changes(&self) -> bool {
        !matches!(
            self,
            Step::Preflight
                | Step::Verify { .. }
                | Step::WaitReady
                | Step::HealthCheck { .. }
                | Step::Bake { .. }
                | Step::Rebake { .. }
                | Step::Record
                | Step::ClearFailure { .. }
        )
    }

    /// Whether the step changes the database schema (so undo must consider it).
    pub fn touches_schema(&self) -> bool {
        matches!(
            self,
            Step::MigrateUp { .. }
                | Step::MigrateDown { .. }
                | Step::RestoreBackup { .. }
                | Step::Restore { .. }
        )
    }
}

/// The first 12 characters of a commit: observed SHAs come from the API, so cut by
/// characters, not bytes.
pub(crate) fn short(sha: &str) -> &str {
    sha.char_indices()
        .nth(12)
        .map_or(sha, |(end, _)| &sha[..end])
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Preflight => f.write_str("preflight: connection, identity, checksums, lock"),
            Step::Backup { version } => match version {
                Some(v) => write!(f, "backup: pg_dump at schema {v}"),
                None => f.write_str("backup: pg_dump of the empty schema"),
            },
            Step::MigrateUp { from, to, versions } => {
                let from = from
                    .as_ref()
                    .map_or("(none)".to_owned(), ToString::to_string);
                write!(
                    f,
                    "migrate up: {from} → {to} ({} migration{})",
                    versions.len(),
                    plural(versions.len())
                )
            }
            Step::MigrateDown { from, to, versions } => {
                write!(
                    f,
                    "migrate down: {from} → {to} ({} migration{})",
                    versions.len(),
                    plural(versions.len())
                )
            }
            Step::RestoreBackup { backup, version } => write!(
                f,
                "restore: backup {backup} (schema {version}); writes since that backup are discarded"
            ),
            Step::Verify { version } => {
                write!(f, "verify: schema {version}, verify files, checks, RLS")
            }
            Step::SetEnv { changes } => {
                let keys: Vec<String> = changes
                    .iter()
                    .map(|c| format!("{}{}", c.action.sign(), c.key))
                    .collect();
                write!(f, "set env: {}", keys.join(", "))
            }
            Step::Deploy { sha, reason } => {
                let why = match reason {
                    DeployReason::Code => "new code",
                    DeployReason::Env => "env changed",
                    DeployReason::CodeAndEnv => "new code and env",
                };
                write!(f, "deploy: build {} ({why})", short(sha))
            }
            Step::WaitReady => f.write_str("wait: build READY"),
            Step::HealthCheck {
                path,
                expect_status,
            } => write!(f, "health: GET {path} expects {expect_status}"),
            Step::Promote { previous } => match previous {
                Some(prev) => write!(f, "promote: production ← new deployment (was {prev})"),
                None => f.write_str("promote: production ← new deployment"),
            },
            Step::Rollout {
                stages, analysis, ..
            } => {
                let stages: Vec<String> = stages
                    .iter()
                    .map(|s| {
                        if s.duration.is_zero() {
                            format!("{}%", s.percent)
                        } else {
                            format!("{}% for {}", s.percent, duration::format(s.duration))
                        }
                    })
                    .collect();
                write!(
                    f,
                    "rollout: {}; each stage needs ≤ {} 5xx over ≥ {} requests{}, else abort; too few requests: {}",
                    stages.join(" → "),
                    rate(analysis.max_error_rate()),
                    analysis.min_requests,
                    if analysis.health {
                        " and a passing health check"
                    } else {
                        ""
                    },
                    match analysis.on_insufficient_traffic {
                        InsufficientTraffic::Hold => "hold",
                        InsufficientTraffic::Proceed => "proceed",
                    }
                )
            }
            Step::Bake { duration: d } => write!(
                f,
                "bake: health-check production for {}",
                duration::format(*d)
            ),
            Step::Rebake {
                deployment,
                duration: d,
                ..
            } => write!(
                f,
                "rebake: the bake of {deployment} never finished; health-check production for {}",
                duration::format(*d)
            ),
            Step::TakeOverPromotion { .. } => f.write_str(
                "take over promotion: turn off the project's auto-assignment of production domains, so pushes build staged (policy.takeOverPromotion)",
            ),
            Step::Record => f.write_str("record: update record in steward_events"),
            Step::Pause { project } => write!(
                f,
                "pause: project {project} stops all traffic (every deployment answers 503)"
            ),
            Step::Unpause { project } => {
                write!(f, "unpause: project {project} serves traffic again")
            }
            Step::Restore { backup, version } => write!(
                f,
                "restore: backup {backup} (schema {}); writes since that backup are discarded",
                version
                    .as_ref()
                    .map_or("(empty)".to_owned(), ToString::to_string)
            ),
            Step::Repair { version, was, mark } => {
                write!(f, "repair: {version} `{was}` → `{mark}`")
            }
            Step::CodeRollback { from, to } => write!(
                f,
                "rollback: production ← {to} (was {}), no rebuild",
                from.as_deref().unwrap_or("(none)")
            ),
            Step::ClearFailure { plan_hash, step } => write!(
                f,
                "retry: clear the Failed state (plan {plan_hash} failed at {step})"
            ),
            Step::Adopt => f.write_str(
                "adopt: write steward_identity, marking the database as this client's",
            ),
            Step::Baseline {
                version,
                record,
                confirmed,
                kept,
            } => write!(
                f,
                "baseline {version}: record {} as applied ({confirmed} shown by .verify.sql, {} on your word; {kept} kept)",
                crate::migrations::summarize(record),
                record.len() - confirmed
            ),
            Step::SchemaReference { version, accepted } => {
                let at = version
                    .as_ref()
                    .map_or("(no version)".to_owned(), ToString::to_string);
                if accepted.is_empty() {
                    write!(
                        f,
                        "schema reference: record the live schema at {at} as the one drift is measured against"
                    )
                } else {
                    write!(
                        f,
                        "schema reference: accept the drift as the reference at {at}: {}",
                        accepted.join("; ")
                    )
                }
            }
        }
    }
}

/// A rate as a percent with no needless digits: `1%`, `0.5%`.
pub fn rate(fraction: f64) -> String {
    let percent = format!("{:.2}", fraction * 100.0);
    let percent = percent.trim_end_matches('0').trim_end_matches('.');
    format!("{percent}%")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl EnvAction {
    pub fn sign(self) -> &'static str {
        match self {
            EnvAction::Add => "+",
            EnvAction::Change => "~",
            EnvAction::Remove => "-",
        }
    }
}

impl fmt::Display for EnvChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.action {
            EnvAction::Add => "added",
            EnvAction::Change => "changed",
            EnvAction::Remove => "removed",
        };
        write!(f, "{}{} {what}", self.action.sign(), self.key)?;
        if self.sensitive {
            f.write_str(" (sensitive)")?;
        } else if let (Some(from), Some(to)) = (&self.from, &self.to) {
            write!(f, " (fingerprint {from} → {to})")?;
        }
        if self.drift {
            f.write_str(" — changed outside steward, restoring the manifest's value")?;
        }
        Ok(())
    }
}
