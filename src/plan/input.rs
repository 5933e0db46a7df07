//! What the planner is given: the desired state with secrets reduced to fingerprints, and
//! the observed state of Postgres and Vercel, as plain data. Producing these values is
//! I/O and happens elsewhere (`apply::observe`); the planner never does any.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::manifest::{ClientConfig, CodeVersion};
use crate::migrations::Version;

/// A client's desired state, ready to plan: the config, the code version resolved to a
/// commit, and each env value reduced to a keyed fingerprint.
#[derive(Debug, Clone)]
pub struct Desired {
    pub config: ClientConfig,
    /// The commit to run (a tag already resolved through GitHub).
    pub sha: String,
    /// The version as written in the manifest (a sha, or a tag shown beside its sha).
    pub version: CodeVersion,
    pub env: Vec<DesiredEnv>,
    /// The fleet revision (Git HEAD of the manifests) this desired state comes from.
    pub revision: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredEnv {
    pub key: String,
    /// HMAC fingerprint of the value under the fleet's key; never the value.
    pub fingerprint: String,
    pub sensitive: bool,
}

/// Everything observed about one client.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub schema: SchemaObserved,
    pub code: CodeObserved,
    pub env: Vec<ObservedEnv>,
    /// The last failed apply, if the client is in the Failed state.
    pub failure: Option<Failure>,
    /// The rehearsal of the pending migrations on a scratch copy (`policy.rehearse:
    /// required`), when migrations are pending.
    pub rehearsal: Option<super::Rehearsal>,
    /// The newest run stopped half-way (its update record says so).
    pub interrupted: Option<super::Interruption>,
    /// The newest operator's request stopped half-way: said in the plan.
    pub request_interrupted: Option<super::Interruption>,
}

#[derive(Debug, Clone, Default)]
pub struct SchemaObserved {
    /// Whether `steward adopt` marked this database as this client's.
    pub identity: IdentityObserved,
    /// Highest version whose latest row is `applied`.
    pub current: Option<Version>,
    /// Applied versions and the checksums recorded when they ran (None: adopted by baseline).
    pub applied: Vec<(Version, Option<String>)>,
    /// Versions whose latest row is `failed` or `in_progress`: a crash left them.
    pub unfinished: Vec<(Version, String)>,
    /// Schema version of the newest backup, if any.
    pub last_backup: Option<BackupObserved>,
    /// How the live schema differs from the one recorded after the last run, if it does.
    pub drift: Option<super::Drift>,
}

/// The default is `NotAdopted`: an observation that was never filled in must not pass
/// the identity check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IdentityObserved {
    Matches,
    #[default]
    NotAdopted,
    OtherClient(String),
    PinnedMismatch {
        pinned: uuid::Uuid,
        found: uuid::Uuid,
    },
}

/// In words, for messages: "matches", "is not adopted by steward", …
impl std::fmt::Display for IdentityObserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityObserved::Matches => f.write_str("matches"),
            IdentityObserved::NotAdopted => f.write_str("is not adopted by steward"),
            IdentityObserved::OtherClient(other) => write!(f, "belongs to client `{other}`"),
            IdentityObserved::PinnedMismatch { pinned, found } => {
                write!(f, "is {found}, but the manifest pins {pinned}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupObserved {
    pub id: String,
    pub version: Option<Version>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeObserved {
    /// The deployment serving production now.
    pub production: Option<Deployment>,
    /// The project is paused (`steward pause`): it serves no traffic, so nothing can be
    /// checked on it and no update starts until it is unpaused.
    pub paused: bool,
    /// The project auto-assigns its production domains (`autoAssignCustomDomains`): a
    /// push to its production branch goes live by itself.
    pub auto_promote: bool,
    /// The deployments steward itself put on production, from its update records: the
    /// newest, first, and one whose promote was in flight when a run stopped. Empty when
    /// steward has no such record (then nothing is judged an outside change).
    pub promoted_by_steward: Vec<String>,
    /// Whether the project can run rolling releases: asked only when `policy.rollout`
    /// is set and new code is about to be released, so a steady pass stays one request.
    pub rolling_releases: RollingReleases,
}

/// What Vercel said about rolling releases for the project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RollingReleases {
    /// Not asked (nothing to release, or no `policy.rollout`): a rollout is planned.
    #[default]
    NotObserved,
    Available,
    /// Vercel refused the feature (the project's plan), in its words.
    Unavailable {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    pub id: String,
    pub sha: Option<String>,
    pub url: Option<String>,
    /// Who made the build and when, from its metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Where a deployment came from, as its metadata says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The commit's author for a Git push (`meta.githubCommitAuthorLogin`), else the
    /// deployment's creator.
    pub by: Option<String>,
    pub at: Option<DateTime<Utc>>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedEnv {
    pub key: String,
    /// The fingerprint steward wrote into the variable's comment; None when steward did
    /// not create this variable.
    pub fingerprint: Option<String>,
    pub sensitive: bool,
    /// Someone changed the variable after steward wrote it (its `updatedAt` moved).
    pub drifted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub plan_hash: String,
    /// The release that failed (`plan::release`); None in records written before steward
    /// recorded releases.
    pub release: Option<String>,
    pub step: String,
    pub error: String,
    pub at: DateTime<Utc>,
}

impl Failure {
    /// Whether this failure was of the release the manifest asks for now. Records older
    /// than release fingerprints can only be matched by their plan hash.
    pub fn is_of(&self, release: &str, plan_hash: &str) -> bool {
        match &self.release {
            Some(failed) => failed == release,
            None => self.plan_hash == plan_hash,
        }
    }
}

/// Facts about the rest of the fleet and who is asking, decided outside the planner.
#[derive(Debug, Clone)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub mode: Mode,
    /// Why an earlier wave blocks this client, if it does.
    pub wave_blocked: Option<String>,
}

/// Who will carry the plan out, and what they said. A person running `steward apply` may
/// approve a reviewed plan by its hash and override a closed maintenance window; the
/// daemon may do neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Daemon,
    Operator {
        /// `--plan-hash`: the plan the operator reviewed. It is the approval a
        /// `policy.apply: manual` client waits for, and only for a plan with that hash.
        approved: Option<String>,
        /// `--ignore-window`: start outside the maintenance window.
        ignore_window: bool,
        /// `--revert-outside-change`: production moved to a commit steward did not
        /// promote and `policy.outsideChange` holds it; put the manifest's commit back.
        revert_outside_change: bool,
    },
}

impl Mode {
    /// An operator who approved nothing and overrides nothing (`steward plan`).
    pub fn operator() -> Mode {
        Mode::Operator {
            approved: None,
            ignore_window: false,
            revert_outside_change: false,
        }
    }

    /// Whether this is the approval of the plan with `hash`.
    pub fn approves(&self, hash: &str) -> bool {
        matches!(self, Mode::Operator { approved: Some(h), .. } if h == hash)
    }

    pub fn reverts_outside_change(&self) -> bool {
        matches!(
            self,
            Mode::Operator {
                revert_outside_change: true,
                ..
            }
        )
    }

    pub fn ignores_window(&self) -> bool {
        matches!(
            self,
            Mode::Operator {
                ignore_window: true,
                ..
            }
        )
    }
}

/// What lint said about one migration, reduced to what planning needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LintSummary {
    /// Destructive statements in the `.up.sql`, as `file:line: message`.
    pub destructive_up: Vec<String>,
    /// Destructive statements in the `.down.sql`.
    pub destructive_down: Vec<String>,
    /// Hazards and unreadable statements, shown but not blocking.
    pub warnings: Vec<String>,
    /// Transaction control in the `.up.sql` / `.down.sql` (when steward runs it inside its
    /// own transaction): always blocking.
    pub transaction_control_up: Vec<String>,
    pub transaction_control_down: Vec<String>,
}
