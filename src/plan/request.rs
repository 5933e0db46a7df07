//! Plans for an operator's requests: `backup`, `restore [--pause-traffic]`, `repair`,
//! `retry`, `pause`, `unpause`, `rollback --code`, `migrate`, `adopt [--baseline]`,
//! `drift accept`. Each request is turned into the same
//! `Plan` a converge makes — steps with their guards and undos, blocks that refuse it —
//! so `--dry-run` shows exactly what the executor will run, and refuses alike. Pure: what
//! was observed comes in, the plan goes out.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Block, Changes, Failure, IdentityObserved, Plan, Step, identity_block};
use crate::migrations::Version;

/// What an operator asked for. The converge of `apply` and the daemon is planned by
/// [`super::plan`]; everything else a command changes is one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// `steward backup`.
    Backup,
    /// `steward restore --backup ID [--pause-traffic]` (the id already resolved).
    Restore { backup: String, pause_traffic: bool },
    /// `steward repair --version V --mark M`.
    Repair { version: Version, mark: RowMark },
    /// `steward retry`.
    Retry,
    /// `steward pause`.
    Pause,
    /// `steward unpause`.
    Unpause,
    /// `steward rollback --code [--to DEPLOYMENT]`.
    RollbackCode { to: Option<String> },
    /// `steward migrate [--to V]`: up or down to `to`.
    Migrate { to: Version },
    /// `steward adopt [--baseline V] [--take-over-promotion]`.
    Adopt {
        baseline: Option<Version>,
        take_over_promotion: bool,
    },
    /// `steward drift accept`.
    DriftAccept,
}

impl Request {
    /// The command's name: what its run is recorded under.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Backup => "backup",
            Request::Restore { .. } => "restore",
            Request::Repair { .. } => "repair",
            Request::Retry => "retry",
            Request::Pause => "pause",
            Request::Unpause => "unpause",
            Request::RollbackCode { .. } => "rollback",
            Request::Migrate { .. } => "migrate",
            Request::Adopt { .. } => "adopt",
            Request::DriftAccept => "drift",
        }
    }

    /// Whether the request reads and writes the client's database under its lock. Only
    /// the traffic switches do not: an emergency stop must not wait for a running bake to
    /// let go of the lock, nor for a database that may be the very thing that is broken.
    pub fn locks_database(&self) -> bool {
        !matches!(
            self,
            Request::Pause | Request::Unpause | Request::RollbackCode { .. }
        )
    }

    /// Whether the request acts on the client's Vercel project. `adopt` reads it too,
    /// for its promotion setting, but only needs it to take promotion over.
    pub fn uses_vercel(&self) -> bool {
        match self {
            Request::Pause | Request::Unpause | Request::RollbackCode { .. } => true,
            Request::Restore { pause_traffic, .. } => *pause_traffic,
            Request::Adopt {
                take_over_promotion,
                ..
            } => *take_over_promotion,
            Request::Backup
            | Request::Repair { .. }
            | Request::Retry
            | Request::Migrate { .. }
            | Request::DriftAccept => false,
        }
    }
}

/// What `repair` records a row as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowMark {
    Applied,
    RolledBack,
}

impl RowMark {
    pub fn as_str(self) -> &'static str {
        match self {
            RowMark::Applied => "applied",
            RowMark::RolledBack => "rolled_back",
        }
    }
}

/// What the request's planner needs to know, read before anything changes (and read
/// again under the client's lock for the run itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestObserved {
    /// The database's identity; `None` when the request does not read the database.
    pub identity: Option<IdentityObserved>,
    /// The schema version now.
    pub current: Option<Version>,
    /// The status of the row a repair settles (when it may be settled).
    pub row_status: Option<String>,
    /// The schema version of the backup a restore reads, once checked.
    pub backup_version: Option<Option<Version>>,
    /// The client's Vercel project, by name; `None` when the request does not use it.
    pub project: Option<String>,
    pub paused: bool,
    pub production: Option<String>,
    /// The production deployment before the current one (Vercel's rollback candidate).
    pub previous: Option<String>,
    /// The client's Failed state.
    pub failure: Option<Failure>,
    /// The migration run `migrate` would make, when the rows allow one.
    pub run: Option<MigrationRun>,
    /// What `adopt --baseline` would record, once the rows and verify files allow it.
    pub baseline: Option<BaselineRun>,
    /// Whether the project auto-assigns its production domains; `None` when it could
    /// not be read (said in `notes`).
    pub auto_promote: Option<bool>,
    /// Whether steward has a production deployment on record (what it answers for).
    pub production_recorded: bool,
    /// Whether a schema reference was ever recorded.
    pub has_reference: bool,
    /// How the live schema differs from the reference, in words.
    pub drift: Vec<String>,
    /// Said in the plan: what was found while looking that the operator should know.
    pub notes: Vec<String>,
    /// Refusals found while reading what the request acts on (a backup that is another
    /// client's or was altered, a row repair may not touch, a migration run refused).
    pub refusals: Vec<Block>,
}

/// The migrations one `migrate` runs, judged by `postgres::path` from the live rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRun {
    pub up: bool,
    pub from: Option<Version>,
    pub versions: Vec<Version>,
    /// Destructive statements the run executes (going down: what undoing loses).
    pub destructive: Vec<(Version, String)>,
}

/// What one `adopt --baseline` records, judged by `postgres::baseline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineRun {
    pub version: Version,
    pub record: Vec<Version>,
    pub confirmed: usize,
    pub kept: usize,
}

/// What the manifest's policy says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestPolicy {
    /// `policy.backup: required`: a migration run takes a backup first.
    pub backup_first: bool,
    /// `policy.destructive: allow`.
    pub destructive_allowed: bool,
    /// `policy.takeOverPromotion`: an auto-promoting project is taken over, not refused.
    pub take_over_promotion: bool,
    /// `spec.database.identity`: the identity the manifest pins, if it does.
    pub pinned: Option<uuid::Uuid>,
}

/// Plan one request. The steps end with `record` when there is anything to do; notes say
/// why there is nothing to do otherwise.
pub fn plan(
    client: &str,
    request: &Request,
    observed: &RequestObserved,
    policy: RequestPolicy,
) -> Plan {
    let mut blocks: Vec<Block> = match (request, &observed.identity) {
        // Adopting is what a database that is not adopted needs; one that is another
        // client's, or not the one the manifest pins, is still refused.
        (Request::Adopt { .. }, Some(IdentityObserved::NotAdopted)) => policy
            .pinned
            .map(|pinned| Block::Identity {
                reason: format!(
                    "the manifest pins identity {pinned}, but this database was never adopted, so it is not the database the pin names; remove spec.database.identity to adopt it as a new one"
                ),
            })
            .into_iter()
            .collect(),
        (_, identity) => identity
            .as_ref()
            .and_then(|identity| identity_block(client, identity))
            .into_iter()
            .collect(),
    };
    blocks.extend(observed.refusals.iter().cloned());
    let mut notes = observed.notes.clone();
    let project = observed.project.clone().unwrap_or_default();
    let mut lint = Vec::new();
    let mut steps = match request {
        Request::Migrate { to } => match &observed.run {
            None => Vec::new(),
            Some(run) if run.versions.is_empty() => {
                notes.push(format!("up to date at {to}; nothing to run"));
                Vec::new()
            }
            Some(run) => {
                for (version, finding) in &run.destructive {
                    lint.push(format!("{version}: destructive: {finding}"));
                    if !policy.destructive_allowed {
                        blocks.push(Block::Destructive {
                            version: version.clone(),
                            finding: finding.clone(),
                        });
                    }
                }
                let mut steps = Vec::new();
                // The guide's "backup taken" comes before any migration, by hand or not.
                if policy.backup_first {
                    notes.push("a backup is taken first (policy.backup: required)".to_owned());
                    steps.push(Step::Backup {
                        version: observed.current.clone(),
                    });
                }
                steps.push(match (run.up, &run.from) {
                    (false, Some(from)) => Step::MigrateDown {
                        from: from.clone(),
                        to: to.clone(),
                        versions: run.versions.clone(),
                    },
                    _ => Step::MigrateUp {
                        from: run.from.clone(),
                        to: to.clone(),
                        versions: run.versions.clone(),
                    },
                });
                steps
            }
        },
        Request::Adopt {
            take_over_promotion,
            ..
        } => {
            let mut steps = Vec::new();
            // First, as in a converge: from here on a push cannot go live by itself.
            match observed.auto_promote {
                Some(true) if *take_over_promotion => steps.push(Step::TakeOverPromotion {
                    production: observed
                        .production
                        .clone()
                        .filter(|_| !observed.production_recorded),
                }),
                Some(true) if !policy.take_over_promotion => blocks.push(Block::AutoPromotion {
                    client: client.to_owned(),
                }),
                Some(true) => notes.push(
                    "the project auto-assigns its production domains; the first plan turns that off (policy.takeOverPromotion)".to_owned(),
                ),
                Some(false) if *take_over_promotion => notes.push(
                    "auto-assignment of production domains is already off: steward promotes".to_owned(),
                ),
                _ => {}
            }
            match &observed.identity {
                Some(IdentityObserved::NotAdopted) => steps.push(Step::Adopt),
                Some(IdentityObserved::Matches) => {
                    notes.push("the database is already adopted by this client".to_owned())
                }
                _ => {}
            }
            if let Some(baseline) = &observed.baseline {
                if baseline.record.is_empty() {
                    notes.push(format!(
                        "baseline {}: every version up to it is already recorded",
                        baseline.version
                    ));
                } else {
                    notes.push(format!(
                        "baseline {}: {} version(s) will be recorded as applied ({} confirmed by their .verify.sql, {} without one, taken as applied on your word), {} already recorded and kept",
                        baseline.version,
                        baseline.record.len(),
                        baseline.confirmed,
                        baseline.record.len() - baseline.confirmed,
                        baseline.kept
                    ));
                    steps.push(Step::Baseline {
                        version: baseline.version.clone(),
                        record: baseline.record.clone(),
                        confirmed: baseline.confirmed,
                        kept: baseline.kept,
                    });
                }
            }
            // The schema as adopted is what drift is measured against from now on; a
            // reference already recorded is kept, so adopting again never accepts drift.
            if !observed.has_reference {
                steps.push(Step::SchemaReference {
                    version: observed.current.clone(),
                    accepted: Vec::new(),
                });
            }
            steps
        }
        Request::DriftAccept if observed.has_reference && observed.drift.is_empty() => {
            notes.push("the live schema matches the reference; nothing to accept".to_owned());
            Vec::new()
        }
        Request::DriftAccept => vec![Step::SchemaReference {
            version: observed.current.clone(),
            accepted: observed.drift.clone(),
        }],
        Request::Backup => vec![Step::Backup {
            version: observed.current.clone(),
        }],
        Request::Restore {
            backup,
            pause_traffic,
        } => {
            let version = observed.backup_version.clone().flatten();
            // A project that is already paused stays paused: this run did not stop it,
            // so it does not let it go either.
            let pause = *pause_traffic && !observed.paused;
            if *pause_traffic && observed.paused {
                notes.push(format!(
                    "traffic is already paused; it stays paused after the restore (`steward unpause {client}`)"
                ));
            }
            let mut steps = Vec::new();
            if pause {
                steps.push(Step::Pause {
                    project: project.clone(),
                });
            }
            steps.push(Step::Restore {
                backup: backup.clone(),
                version: version.clone(),
            });
            if let Some(version) = version {
                steps.push(Step::Verify { version });
            }
            if pause {
                steps.push(Step::Unpause { project });
            }
            steps
        }
        Request::Repair { version, mark } => match &observed.row_status {
            Some(was) => vec![Step::Repair {
                version: version.clone(),
                was: was.clone(),
                mark: mark.as_str().to_owned(),
            }],
            None => Vec::new(),
        },
        Request::Retry => match &observed.failure {
            Some(failure) => vec![Step::ClearFailure {
                plan_hash: failure.plan_hash.clone(),
                step: failure.step.clone(),
            }],
            None => {
                notes.push("not in the Failed state; nothing to retry".to_owned());
                Vec::new()
            }
        },
        Request::Pause if observed.paused => {
            notes.push(format!("project {project} is already paused"));
            Vec::new()
        }
        Request::Pause => vec![Step::Pause { project }],
        Request::Unpause if !observed.paused => {
            notes.push(format!("project {project} is not paused"));
            Vec::new()
        }
        Request::Unpause => vec![Step::Unpause { project }],
        Request::RollbackCode { to } => {
            let target = to.clone().or_else(|| {
                observed
                    .previous
                    .clone()
                    .filter(|p| !p.is_empty() && Some(p) != observed.production.as_ref())
            });
            match target {
                Some(to) if Some(&to) == observed.production.as_ref() => {
                    notes.push(format!("production is already {to}"));
                    Vec::new()
                }
                Some(to) => {
                    notes.push(format!(
                        "the release now in production, when steward put it there, is held as failed: neither the daemon nor `apply` rolls forward to it until the manifest names another release or `steward retry {client}`"
                    ));
                    vec![Step::CodeRollback {
                        from: observed.production.clone(),
                        to,
                    }]
                }
                None => {
                    blocks.push(Block::NoPreviousDeployment {
                        client: client.to_owned(),
                    });
                    Vec::new()
                }
            }
        }
    };
    if !steps.is_empty() {
        steps.push(Step::Record);
    }
    blocks.dedup();
    let hash = hash(client, request, &steps);
    Plan {
        client: client.to_owned(),
        command: request.command().to_owned(),
        steps,
        changes: Changes::default(),
        holds: Vec::new(),
        blocks,
        lint,
        notes,
        rehearsal: None,
        drift: Vec::new(),
        interrupted: None,
        outside_change: None,
        release: hash.clone(),
        hash,
    }
}

/// The client, the request and the steps (which name the backup, the row, the
/// deployments), as 16 hex characters.
fn hash(client: &str, request: &Request, steps: &[Step]) -> String {
    let input = serde_json::json!({
        "client": client,
        "request": request,
        "steps": steps,
    });
    let digest = Sha256::digest(input.to_string().as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> RequestObserved {
        RequestObserved {
            identity: Some(IdentityObserved::Matches),
            current: Some("2024_01_01_001".parse().expect("version")),
            project: Some("shop-web".into()),
            production: Some("dpl_2".into()),
            previous: Some("dpl_1".into()),
            ..RequestObserved::default()
        }
    }

    fn plan_of(client: &str, request: &Request, observed: &RequestObserved) -> Plan {
        plan(client, request, observed, RequestPolicy::default())
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.steps.iter().map(Step::kind).collect()
    }

    #[test]
    fn restore_with_pause_traffic_pauses_restores_verifies_and_unpauses() {
        let mut observed = seen();
        observed.backup_version = Some(observed.current.clone());
        let request = Request::Restore {
            backup: "b1".into(),
            pause_traffic: true,
        };
        let plan = plan("shop", &request, &observed, RequestPolicy::default());
        assert_eq!(
            kinds(&plan),
            ["pause", "restore", "verify", "unpause", "record"]
        );
        assert_eq!(plan.steps[0].undo(), crate::plan::Undo::Unpause);
        assert_eq!(plan.command, "restore");
    }

    #[test]
    fn a_restore_of_a_paused_project_leaves_the_pause_alone() {
        let mut observed = seen();
        observed.paused = true;
        let request = Request::Restore {
            backup: "b1".into(),
            pause_traffic: true,
        };
        let plan = plan("shop", &request, &observed, RequestPolicy::default());
        assert_eq!(kinds(&plan), ["restore", "record"]);
        assert!(plan.notes[0].contains("already paused"), "{:?}", plan.notes);
    }

    #[test]
    fn another_clients_database_blocks_every_database_request() {
        let mut observed = seen();
        observed.identity = Some(IdentityObserved::OtherClient("acme".into()));
        let plan = plan_of("shop", &Request::Backup, &observed);
        assert!(!plan.runnable());
        assert!(plan.blocks[0].to_string().contains("acme"), "{plan:?}");
    }

    #[test]
    fn pause_undoes_by_unpausing_and_an_already_paused_project_is_left_alone() {
        let plan_now = plan_of("shop", &Request::Pause, &seen());
        assert_eq!(kinds(&plan_now), ["pause", "record"]);
        let mut paused = seen();
        paused.paused = true;
        assert!(plan_of("shop", &Request::Pause, &paused).steps.is_empty());
        assert_eq!(
            kinds(&plan_of("shop", &Request::Unpause, &paused)),
            ["unpause", "record"]
        );
    }

    #[test]
    fn rollback_goes_to_the_previous_deployment_and_its_undo_promotes_the_current_again() {
        let plan = plan_of("shop", &Request::RollbackCode { to: None }, &seen());
        assert_eq!(
            plan.steps[0],
            Step::CodeRollback {
                from: Some("dpl_2".into()),
                to: "dpl_1".into()
            }
        );
        assert_eq!(
            plan.steps[0].undo(),
            crate::plan::Undo::PromotePrevious {
                deployment: Some("dpl_2".into())
            }
        );
    }

    #[test]
    fn rollback_without_a_previous_deployment_is_blocked() {
        let mut observed = seen();
        observed.previous = None;
        let plan = plan_of("shop", &Request::RollbackCode { to: None }, &observed);
        assert!(plan.steps.is_empty());
        assert!(matches!(
            plan.blocks.as_slice(),
            [Block::NoPreviousDeployment { .. }]
        ));
    }

    #[test]
    fn migrate_under_backup_required_backs_up_first_and_destructive_sql_is_refused_by_default() {
        let mut observed = seen();
        observed.run = Some(MigrationRun {
            up: true,
            from: observed.current.clone(),
            versions: vec!["2024_02_01_001".parse().expect("version")],
            destructive: vec![(
                "2024_02_01_001".parse().expect("version"),
                "DROP TABLE members".into(),
            )],
        });
        let request = Request::Migrate {
            to: "2024_02_01_001".parse().expect("version"),
        };
        let policy = RequestPolicy {
            backup_first: true,
            ..RequestPolicy::default()
        };
        let refused = plan("shop", &request, &observed, policy);
        assert_eq!(kinds(&refused), ["backup", "migrate_up", "record"]);
        assert!(matches!(
            refused.blocks.as_slice(),
            [Block::Destructive { .. }]
        ));
        let allowed = RequestPolicy {
            destructive_allowed: true,
            ..policy
        };
        assert!(plan("shop", &request, &observed, allowed).runnable());
    }

    #[test]
    fn retry_without_a_failure_has_nothing_to_do() {
        let plan = plan_of("shop", &Request::Retry, &seen());
        assert!(plan.steps.is_empty());
        assert_eq!(plan.notes, ["not in the Failed state; nothing to retry"]);
    }
}
