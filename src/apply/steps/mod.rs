//! Running one step, and undoing one, with errors that keep their class: whether the
//! step was refused by its guard, met a transient fault on steward's own side, got a bad
//! answer from the release itself, or failed for another reason. The executor's loop
//! (`execute.rs`) decides what each class means for the run; this module only says which
//! class an error is. One file per step family.

mod adoption;
mod code;
mod database;
mod records;
pub mod rollout;

use std::time::Duration;

pub use records::{describe, event};

use sqlx::PgConnection;

use super::record::RecordError;
use super::{Prepared, Runner};
use crate::manifest::{Client, Fleet};
use crate::plan::{self, Guard, Plan, Step, Undo};
use crate::postgres::{PgError, Session};
use crate::secret::Secret;
use crate::vercel::{self, EnvUndo, VercelError};

/// What a step's failure says, and so what the executor does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A guard said no: the world moved since planning. Nothing of this step ran.
    Refused,
    /// A fault on steward's side or on the way (our proxy, DNS, our own timeouts, file
    /// descriptors, a lost database connection, Vercel 429/5xx past the call's budget):
    /// says nothing about the release. Retried; if it persists the run is interrupted,
    /// never undone as a bad release.
    Transient,
    /// The release's own answer: its health check got a bad status, its build ended in
    /// ERROR, its bake failed. Judges the release: undo per policy, the client is Failed.
    Release,
    /// Anything else (a migration that failed, a verify check that is false).
    Failed,
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorClass::Refused => "refused",
            ErrorClass::Transient => "transient",
            ErrorClass::Release => "release",
            ErrorClass::Failed => "failed",
        })
    }
}

/// Why a step (or an undo) did not do what it should.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The step's guard refused (`guard: …`).
    #[error("guard: {0}")]
    Guard(String),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error(transparent)]
    Vercel(#[from] VercelError),
    /// The bake's health check of production (or of a rollout's canary).
    #[error("bake: {0}")]
    Bake(#[source] VercelError),
    /// A rollout stage judged the canary bad on its live traffic: aborted.
    #[error("rollout {0}")]
    Rollout(String),
    /// A rollout stage had too little traffic to judge, under `onInsufficientTraffic:
    /// hold`: aborted, for an operator.
    #[error("rollout {0}")]
    RolloutHeld(String),
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The step ran but its record could not be written: it is undone like a failure,
    /// since a change nobody can see in the history must not stay.
    #[error("the step ran but its update record could not be written: {0}")]
    Unrecorded(#[source] RecordError),
    /// A verify check returned false.
    #[error("verify failed: {0}")]
    Verify(String),
    /// A step found nothing to act on that an earlier step should have left (a bug or a
    /// plan run out of order).
    #[error("{0}")]
    Missing(&'static str),
    /// The undo has nothing it can put back.
    #[error("{0}")]
    Undo(String),
    /// Shutdown arrived while the step was checking (a bake cut short): the check did not
    /// finish, which says nothing about the release.
    #[error("shutdown before the {0} finished")]
    Stopped(&'static str),
}

impl StepError {
    pub fn class(&self) -> ErrorClass {
        match self {
            StepError::Guard(_) => ErrorClass::Refused,
            StepError::Postgres(err) if err.is_refusal() => ErrorClass::Refused,
            StepError::Postgres(err) if lost_connection(err) => ErrorClass::Transient,
            StepError::Postgres(_) => ErrorClass::Failed,
            StepError::Vercel(err) | StepError::Bake(err) => vercel_class(err),
            StepError::Record(RecordError::Database(err)) if sqlx_transient(err) => {
                ErrorClass::Transient
            }
            StepError::Record(_) | StepError::Unrecorded(_) => ErrorClass::Failed,
            StepError::Stopped(_) => ErrorClass::Transient,
            StepError::Rollout(_) => ErrorClass::Release,
            StepError::Verify(_)
            | StepError::Missing(_)
            | StepError::Undo(_)
            | StepError::RolloutHeld(_) => ErrorClass::Failed,
        }
    }
}

/// Only the deployment's own answers judge a release; no answer, or Vercel's API being
/// unavailable or rate limited past the call's budget, is transient.
fn vercel_class(err: &VercelError) -> ErrorClass {
    match err {
        VercelError::Unhealthy { .. }
        | VercelError::BuildFailed { .. }
        | VercelError::Timeout { .. } => ErrorClass::Release,
        VercelError::HealthUnreachable { .. }
        | VercelError::Transport { .. }
        | VercelError::RateLimited { .. } => ErrorClass::Transient,
        VercelError::Api { status, .. } if *status == 429 || *status >= 500 => {
            ErrorClass::Transient
        }
        VercelError::Api { .. } | VercelError::Shape { .. } | VercelError::HealthUrl { .. } => {
            ErrorClass::Failed
        }
    }
}

/// The database went away under the step (not: the step's SQL was wrong).
fn lost_connection(err: &PgError) -> bool {
    match err {
        PgError::Unreachable { .. } => true,
        PgError::Query { source, .. } => sqlx_transient(source),
        _ => false,
    }
}

/// I/O, TLS, pool and worker faults, and the server's connection-exception (08) and
/// operator-intervention (57P: shutdown, crash) classes.
fn sqlx_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// What the steps produced that later steps (and undos) need.
#[derive(Default)]
pub struct Scratch {
    pub deployment: Option<vercel::Deployment>,
    pub env_undo: Option<EnvUndo>,
    /// Sensitive variables whose previous value cannot be re-read, with the secret
    /// reference it came from.
    pub env_unknown: Vec<(String, String)>,
    /// The id of the backup this run took.
    pub backup: Option<String>,
    /// What the steps did, in words, for the record and the operator (a backup's id and
    /// checksum, the project paused, the versions a restore undid).
    pub said: Vec<String>,
    /// Versions a restore marked `rolled_back`.
    pub undone: Vec<String>,
    /// A rollout's judged stages, in order.
    pub rollout: Vec<rollout::StageVerdict>,
    /// The identity an `adopt` step wrote (what its undo removes).
    pub adopted: Option<uuid::Uuid>,
}

/// The client's Vercel project, as a step acts on it.
#[derive(Clone, Copy)]
pub struct Link<'a> {
    pub api: &'a vercel::VercelClient,
    pub project: &'a vercel::Project,
}

/// Everything a step reads about the run it is part of.
pub struct Ctx<'a> {
    pub runner: &'a Runner,
    pub fleet: &'a Fleet,
    pub client: &'a Client,
    pub plan: &'a Plan,
    pub database_url: &'a Secret,
    /// Absent for requests that never touch Vercel.
    pub vercel: Option<Link<'a>>,
    /// The converge's whole look (desired env, observed env and production); absent for
    /// an operator's request.
    pub converge: Option<&'a Prepared>,
}

impl<'a> Ctx<'a> {
    /// The context of a converge run.
    pub fn converge(
        runner: &'a Runner,
        fleet: &'a Fleet,
        client: &'a Client,
        prepared: &'a Prepared,
    ) -> Self {
        Ctx {
            runner,
            fleet,
            client,
            plan: &prepared.plan,
            database_url: &prepared.database_url,
            vercel: Some(Link {
                api: &prepared.vercel,
                project: &prepared.project,
            }),
            converge: Some(prepared),
        }
    }

    fn name(&self) -> &str {
        &self.client.config.name
    }

    fn actor(&self) -> crate::postgres::Actor<'_> {
        crate::postgres::Actor {
            name: &self.runner.actor,
            revision: self.runner.revision.as_deref(),
        }
    }

    fn link(&self) -> Result<Link<'a>, StepError> {
        self.vercel
            .ok_or(StepError::Missing("this run has no Vercel project"))
    }

    fn prepared(&self) -> Result<&'a Prepared, StepError> {
        self.converge
            .ok_or(StepError::Missing("this step belongs to a converge plan"))
    }
}

/// The client's database as a run holds it: locked (every run that changes the database
/// or reads what it must not see change), or a plain connection for the update records
/// only (the traffic switches), which may be absent when the database cannot be reached.
pub enum Db {
    Locked(Session),
    Records(Option<PgConnection>),
}

impl Db {
    pub fn session(&mut self) -> Result<&mut Session, StepError> {
        match self {
            Db::Locked(session) => Ok(session),
            Db::Records(_) => Err(StepError::Missing(
                "this step needs the client's database under steward's lock",
            )),
        }
    }

    /// Where update records go, when the database can be reached.
    pub fn records(&mut self) -> Option<&mut PgConnection> {
        match self {
            Db::Locked(session) => Some(session.connection()),
            Db::Records(conn) => conn.as_mut(),
        }
    }

    /// Whether a record that cannot be written must stop the run: yes under the lock (a
    /// change nobody can see in the history must not happen), no for the traffic
    /// switches (the emergency stop goes ahead, and says its record is missing).
    pub fn records_required(&self) -> bool {
        matches!(self, Db::Locked(_))
    }

    pub async fn close(self) {
        match self {
            Db::Locked(session) => session.close().await,
            Db::Records(Some(conn)) => crate::postgres::close(conn).await,
            Db::Records(None) => {}
        }
    }
}

/// Check a step's precondition right before it runs.
pub async fn check_guard(ctx: &Ctx<'_>, step: &Step, db: &mut Db) -> Result<(), StepError> {
    match step.guard() {
        Guard::None => Ok(()),
        // Checked on the session's own connection right before the step: a request's
        // session is opened without the check, its plan having judged the identity.
        Guard::Identity => {
            let pinned = ctx.client.config.database.identity;
            Ok(db.session()?.check_identity(pinned).await?)
        }
        Guard::SchemaAt { version } => {
            let current = db.session()?.current_version().await?;
            if current == version {
                Ok(())
            } else {
                Err(StepError::Guard(format!(
                    "the schema moved to {current:?} since planning (expected {version:?}); not touching it"
                )))
            }
        }
        Guard::EnvUnchanged => {
            let prepared = ctx.prepared()?;
            let now = vercel::observe(&prepared.vercel, &prepared.project.id).await?;
            if plan::env_changes(&prepared.desired.env, &now.env)
                == plan::env_changes(&prepared.desired.env, &prepared.observed.env)
            {
                Ok(())
            } else {
                Err(StepError::Guard(
                    "the project's env changed since planning; not overwriting someone else's change"
                        .to_owned(),
                ))
            }
        }
        Guard::ProductionIs { deployment } => {
            let link = ctx.link()?;
            let project = link.api.project(&link.project.id).await?;
            let current = project.production().map(|d| d.id.clone());
            if current == deployment {
                Ok(())
            } else {
                Err(StepError::Guard(format!(
                    "production moved to {current:?} since planning (expected {deployment:?}); not promoting over it"
                )))
            }
        }
        Guard::Traffic { paused } => {
            let link = ctx.link()?;
            let project = link.api.project(&link.project.id).await?;
            if project.paused.unwrap_or(false) == paused {
                Ok(())
            } else {
                Err(StepError::Guard(format!(
                    "the project was {} by someone else since planning; leaving it as it is",
                    if paused { "unpaused" } else { "paused" }
                )))
            }
        }
        Guard::BackupIntact { backup } => {
            let pinned = ctx.client.config.database.identity;
            db.session()?.check_identity(pinned).await?;
            database::check_backup(ctx, &backup).await
        }
        Guard::RowUnfinished { version } => {
            let rows = db.session()?.latest_rows().await?;
            let unfinished = rows.iter().any(|r| {
                r.version == version && matches!(r.status.as_str(), "in_progress" | "failed")
            });
            if unfinished {
                Ok(())
            } else {
                Err(StepError::Guard(format!(
                    "{version} is no longer `in_progress` or `failed`; someone settled it since planning"
                )))
            }
        }
        Guard::NotAdopted => adoption::check_not_adopted(ctx, db.session()?).await,
        Guard::BaselineHolds { .. } => adoption::check_baseline(ctx, db.session()?, step).await,
        Guard::DriftIs { changes } => adoption::check_drift(ctx, db.session()?, &changes).await,
    }
}

/// Run one step. Exhaustive: each family's file owns its steps.
pub async fn run_step(
    ctx: &Ctx<'_>,
    db: &mut Db,
    step: &Step,
    scratch: &mut Scratch,
) -> Result<(), StepError> {
    match step {
        Step::Preflight
        | Step::Backup { .. }
        | Step::MigrateUp { .. }
        | Step::MigrateDown { .. }
        | Step::RestoreBackup { .. }
        | Step::Restore { .. }
        | Step::Repair { .. }
        | Step::Verify { .. } => database::run(ctx, db.session()?, step, scratch).await,
        Step::SetEnv { .. }
        | Step::Deploy { .. }
        | Step::WaitReady
        | Step::HealthCheck { .. }
        | Step::Promote { .. }
        | Step::Bake { .. }
        | Step::Rebake { .. }
        | Step::Pause { .. }
        | Step::Unpause { .. }
        | Step::CodeRollback { .. }
        | Step::TakeOverPromotion { .. } => code::run(ctx, step, scratch).await,
        Step::Rollout { .. } => rollout::run(ctx, step, scratch).await,
        Step::Record => records::complete(ctx, db, scratch).await,
        Step::ClearFailure { .. } => records::clear_failure(ctx, db.session()?, scratch).await,
        Step::Adopt | Step::Baseline { .. } | Step::SchemaReference { .. } => {
            adoption::run(ctx, db.session()?, step, scratch).await
        }
    }
}

/// Carry out one undo.
pub async fn undo(
    ctx: &Ctx<'_>,
    db: &mut Db,
    action: &Undo,
    scratch: &Scratch,
) -> Result<(), StepError> {
    match action {
        Undo::Nothing => Ok(()),
        Undo::MigrateDownTo { .. } | Undo::MigrateUpTo { .. } | Undo::RestoreTakenBackup => {
            database::undo(ctx, db.session()?, action, scratch).await
        }
        Undo::RestoreEnv
        | Undo::PromotePrevious { .. }
        | Undo::Pause
        | Undo::Unpause
        | Undo::RestoreAutoPromotion => code::undo(ctx, action, scratch).await,
        Undo::AbortRollout { previous } => rollout::undo(ctx, previous.as_deref()).await,
        Undo::ForgetIdentity => adoption::forget_identity(ctx, db.session()?, scratch).await,
    }
}

/// How long the bake waits between checks of production.
pub(crate) fn bake_interval(duration: Duration) -> Duration {
    (duration / 3).clamp(Duration::from_millis(200), Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vercel(err: VercelError) -> ErrorClass {
        StepError::Vercel(err).class()
    }

    #[test]
    fn only_the_deployments_own_answers_judge_the_release() {
        let unhealthy = VercelError::Unhealthy {
            url: "u".into(),
            reason: "answered 500".into(),
        };
        assert_eq!(StepError::Bake(unhealthy).class(), ErrorClass::Release);
        let build = VercelError::BuildFailed {
            deployment: "d".into(),
            code: "BUILD_FAILED".into(),
            message: "m".into(),
        };
        assert_eq!(vercel(build), ErrorClass::Release);
        let no_answer = VercelError::HealthUnreachable {
            url: "u".into(),
            reason: "cannot connect".into(),
        };
        assert_eq!(StepError::Bake(no_answer).class(), ErrorClass::Transient);
        // No later try can request a URL that is not one: not retried without end.
        let no_url = VercelError::HealthUrl {
            url: "http://<img>.vercel.app/".into(),
            reason: "not a URL that can be requested".into(),
        };
        assert_eq!(StepError::Bake(no_url).class(), ErrorClass::Failed);
    }

    #[test]
    fn vercel_unavailable_past_the_budget_is_transient_and_a_bad_request_is_not() {
        let api = |status| VercelError::Api {
            status,
            code: "c".into(),
            message: "m".into(),
            retry_after: None,
        };
        assert_eq!(vercel(api(429)), ErrorClass::Transient);
        assert_eq!(vercel(api(503)), ErrorClass::Transient);
        assert_eq!(vercel(api(403)), ErrorClass::Failed);
    }

    #[test]
    fn a_lost_database_is_transient_and_a_refusal_is_refused() {
        let gone = PgError::Unreachable {
            client: "c".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(StepError::Postgres(gone).class(), ErrorClass::Transient);
        let io = PgError::Query {
            client: "c".into(),
            context: "x".into(),
            source: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        };
        assert_eq!(StepError::Postgres(io).class(), ErrorClass::Transient);
        let refused = PgError::Refused {
            client: "c".into(),
            message: "m".into(),
        };
        assert_eq!(StepError::Postgres(refused).class(), ErrorClass::Refused);
        assert_eq!(
            StepError::Guard("moved".into()).class(),
            ErrorClass::Refused
        );
        assert_eq!(
            StepError::Verify("false".into()).class(),
            ErrorClass::Failed
        );
    }
}
