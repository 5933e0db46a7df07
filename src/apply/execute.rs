//! Carrying out a plan under the client's lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::record::{self, Event, EventKind, RecordError};
use super::steps::{self, Ctx, Db, ErrorClass, Scratch, StepError, describe, event};
use super::undo::{self, UndoPlan};
use super::{ApplyError, Prepared, SchemaCache, observe};
use crate::manifest::schedule::WindowState;
use crate::manifest::{Client, Fleet};
use crate::plan::{APPLY, Mode, Plan, Step, Undo};
use crate::postgres::Session;
use crate::vercel;

/// A progress callback: client, step, what happened.
pub type OnStep = Arc<dyn Fn(&str, &Step, StepEvent) + Send + Sync>;

/// Called when a plan is about to run (the daemon's before-update notification).
pub type OnStart = Arc<dyn Fn(&Plan) + Send + Sync>;

/// Called with the first look at a client, before anything runs (the dashboard's
/// desired-beside-live view).
pub type OnObserved = Arc<dyn Fn(&Prepared) + Send + Sync>;

/// Settings for one run.
#[derive(Clone)]
pub struct Runner {
    pub actor: String,
    pub revision: Option<String>,
    pub mode: Mode,
    pub lock_timeout: Duration,
    /// How long a build may take before it counts as failed.
    pub build_timeout: Duration,
    /// Set to true to stop starting new steps (SIGTERM); the running one finishes.
    pub stop: Option<watch::Receiver<bool>>,
    /// Called as steps start and end, for progress output and metrics.
    pub on_step: Option<OnStep>,
    /// Called once, under the lock, just before the first step of a plan runs.
    pub on_start: Option<OnStart>,
    /// Called with every first look at the client, converged or not.
    pub on_observed: Option<OnObserved>,
    pub wave_blocked: Option<String>,
    /// How many times a step that failed for a transient reason is tried again before
    /// the run ends Interrupted.
    pub transient_retries: usize,
    /// A Vercel client to share across runs (its connection pool with it); built from the
    /// fleet when absent.
    pub vercel: Option<vercel::VercelClient>,
    /// The daemon's memory of converged client databases; absent, every run observes
    /// live. Only the first, lock-free look may use it.
    pub schema_cache: Option<Arc<SchemaCache>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("actor", &self.actor)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new(actor: impl Into<String>, mode: Mode) -> Self {
        Runner {
            actor: actor.into(),
            revision: None,
            mode,
            lock_timeout: Duration::from_secs(30),
            build_timeout: Duration::from_secs(20 * 60),
            stop: None,
            on_step: None,
            on_start: None,
            on_observed: None,
            wave_blocked: None,
            transient_retries: 2,
            vercel: None,
            schema_cache: None,
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepEvent {
    Started,
    Succeeded(Duration),
    Failed(String),
    Undone,
    /// A rollout moved to a stage, or judged one: where its traffic stands now.
    Rollout(RolloutProgress),
}

/// A running rollout's live stage, for `/status`, `/metrics` and the progress lines.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RolloutProgress {
    /// 1-based, of `stages` (the final 100% stage included).
    pub stage: usize,
    pub stages: usize,
    /// The new deployment's share of production traffic.
    pub percent: u8,
    /// The canary's 5xx share in the stage so far, once it served requests.
    pub error_rate: Option<f64>,
}

impl std::fmt::Display for RolloutProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rollout stage {}/{}: {}% of traffic on the new deployment",
            self.stage, self.stages, self.percent
        )?;
        if let Some(rate) = self.error_rate {
            write!(f, ", {} 5xx", crate::plan::rate(rate))?;
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to do.
    Converged(Plan),
    /// Held or blocked: nothing was run.
    NotRun(Plan),
    /// Every step ran; `said` is what they did, in words (a backup's id, the project
    /// paused, the versions a restore undid).
    Applied { plan: Plan, said: Vec<String> },
    /// A step failed; the undo plan says what was put back and what was kept.
    Failed {
        plan: Plan,
        step: String,
        /// Refused by a guard, a bad answer from the release, or another failure.
        class: ErrorClass,
        error: String,
        undo: UndoPlan,
        undo_errors: Vec<String>,
        /// Update records that could not be written, even after retries (the undo ran
        /// regardless).
        record_errors: Vec<String>,
    },
    /// Shutdown arrived, or the maintenance window closed, between steps, or a step kept
    /// failing for a transient reason (`why` starts "transient: "): nothing was undone and
    /// the client is not Failed; the next run picks up from what is live.
    Interrupted {
        plan: Plan,
        after: String,
        why: String,
    },
}

impl Outcome {
    pub fn plan(&self) -> &Plan {
        match self {
            Outcome::Converged(p) | Outcome::NotRun(p) => p,
            Outcome::Applied { plan, .. }
            | Outcome::Failed { plan, .. }
            | Outcome::Interrupted { plan, .. } => plan,
        }
    }
}

/// Observe, plan and apply one client. With `expected_hash`, refuse unless the plan
/// computed now (under the lock) is the one that was reviewed.
pub async fn execute(
    runner: &Runner,
    fleet: &Fleet,
    client: &Client,
    expected_hash: Option<&str>,
) -> Result<Outcome, ApplyError> {
    let name = client.config.name.clone();
    // Labelled with the client, so a wait on a rate-limit window shows whose it is.
    let vercel_client = match &runner.vercel {
        Some(shared) => shared.for_client(&name),
        None => observe::vercel_client(fleet)?.for_client(&name),
    };
    let first = observe::prepare(
        fleet,
        client,
        &vercel_client,
        runner.mode.clone(),
        runner.wave_blocked.clone(),
        runner.revision.clone(),
        runner.schema_cache.as_deref(),
    )
    .await?;
    if let Some(on_observed) = &runner.on_observed {
        on_observed(&first);
    }
    execute_prepared(runner, fleet, client, first, expected_hash).await
}

/// Run the plan that was shown (`apply` prints it, the daemon judges it), with the one
/// observation and the one Vercel client it was made from. Under the client's lock the
/// database is read again on the locked connection — the half of the look the lock
/// protects, and the only half the daemon's schema cache may have served — and the shown
/// plan runs only when that read finds what the plan was made from; otherwise the client
/// is looked at again and planned anew (another runner acted meanwhile). The Vercel half
/// is not read twice: each Vercel step's guard (env unchanged, production is the planned
/// deployment) checks it right before the step. With `expected_hash`, refuse unless the
/// plan that runs is the reviewed one.
pub async fn execute_prepared(
    runner: &Runner,
    fleet: &Fleet,
    client: &Client,
    shown: Prepared,
    expected_hash: Option<&str>,
) -> Result<Outcome, ApplyError> {
    let name = client.config.name.clone();
    if shown.plan.steps.is_empty() {
        return Ok(Outcome::Converged(shown.plan));
    }
    if !shown.plan.runnable() {
        if let Some(expected) = expected_hash
            && expected != shown.plan.hash
        {
            return Err(refused(&name, &shown.plan, expected));
        }
        return Ok(Outcome::NotRun(shown.plan));
    }
    let mut session = Session::open(
        &name,
        &shown.database_url,
        client.config.database.identity,
        runner.lock_timeout,
        false,
    )
    .await?;
    let prepared = match unchanged_under_lock(&mut session, client, &shown).await {
        Ok(true) => shown,
        Ok(false) => {
            let again = observe::prepare(
                fleet,
                client,
                &shown.vercel,
                runner.mode.clone(),
                runner.wave_blocked.clone(),
                runner.revision.clone(),
                None,
            )
            .await;
            match again {
                Ok(again) => again,
                Err(err) => {
                    session.close().await;
                    return Err(err);
                }
            }
        }
        Err(err) => {
            session.close().await;
            return Err(err.into());
        }
    };
    if let Some(expected) = expected_hash
        && expected != prepared.plan.hash
    {
        session.close().await;
        return Err(refused(&name, &prepared.plan, expected));
    }
    if !prepared.plan.runnable() {
        session.close().await;
        return Ok(if prepared.plan.steps.is_empty() {
            Outcome::Converged(prepared.plan)
        } else {
            Outcome::NotRun(prepared.plan)
        });
    }
    let ctx = Ctx::converge(runner, fleet, client, &prepared);
    let mut db = Db::Locked(session);
    let outcome = run_steps(&ctx, &mut db).await;
    db.close().await;
    outcome
}

/// Whether the database, read now on the locked connection, is as the shown plan saw it:
/// identity, versions and their checksums, unfinished rows, drift, the Failed state and
/// the newest run's interruption.
async fn unchanged_under_lock(
    session: &mut Session,
    client: &Client,
    shown: &Prepared,
) -> Result<bool, crate::postgres::PgError> {
    let name = &client.config.name;
    let (state, failure) =
        crate::postgres::observe_on(session.connection(), name, &client.config.database).await?;
    let seen = &shown.observed;
    let live = state.to_observed();
    Ok(live.identity == seen.schema.identity
        && live.current == seen.schema.current
        && live.applied == seen.schema.applied
        && live.unfinished == seen.schema.unfinished
        && live.drift == seen.schema.drift
        && failure == seen.failure
        && state.interrupted == seen.interrupted)
}

fn refused(name: &str, plan: &Plan, expected: &str) -> ApplyError {
    ApplyError::Refused {
        client: name.to_owned(),
        message: format!(
            "the plan changed since it was reviewed (reviewed {expected}, now {}); run `steward plan` again and review it",
            plan.hash
        ),
    }
}

/// Run a plan's steps in order on the client's database as `db` holds it: intent before
/// each step, its guard right before it, its outcome after it; on failure the undos per
/// `policy.rollback`. Every plan runs here: a converge and every operator's request.
pub(super) async fn run_steps(ctx: &Ctx<'_>, db: &mut Db) -> Result<Outcome, ApplyError> {
    let (runner, client, plan) = (ctx.runner, ctx.client, ctx.plan);
    // A record that cannot be written stops a run before its first change, unless the
    // run may go on without its records (the traffic switches): then it is said.
    let mut unrecorded = Unrecorded {
        required: db.records_required(),
        errors: Vec::new(),
    };
    match db.records() {
        Some(conn) => unrecorded.must(record::ensure_table(conn).await)?,
        None => unrecorded.must(Err(RecordError::Unreachable))?,
    }
    let mut started = event(runner, plan, &plan.command, EventKind::Started);
    if plan.command == APPLY
        && runner.mode.ignores_window()
        && let WindowState::Closed { .. } = client.config.schedule.state(Utc::now())
    {
        // The override of a hold is a decision someone made: the record names them.
        started.detail = Some(format!(
            "--ignore-window: started outside the maintenance window by {}",
            runner.actor
        ));
    }
    unrecorded.must(write(db, &started).await)?;
    if let Some(rehearsal) = &plan.rehearsal {
        let mut e = event(runner, plan, "rehearse", EventKind::Succeeded);
        super::rehearsal::describe(&mut e, rehearsal);
        unrecorded.must(write(db, &e).await)?;
    }
    if let Some(on_start) = &runner.on_start {
        on_start(plan);
    }
    let mut scratch = Scratch::default();
    let mut completed: Vec<Step> = Vec::new();
    let notify = |step: &Step, what: StepEvent| {
        if let Some(on_step) = &runner.on_step {
            on_step(&plan.client, step, what);
        }
    };
    for step in &plan.steps {
        if let Some(why) = interruption(runner, client, plan, step, Utc::now()) {
            let after = completed.last().map_or("start", Step::kind).to_owned();
            let mut e = event(runner, plan, &plan.command, EventKind::Manual);
            e.detail = Some(format!(
                "interrupted: {why} after {after}; the next run continues from what is live"
            ));
            unrecorded.must(write(db, &e).await)?;
            return Ok(Outcome::Interrupted {
                plan: plan.clone(),
                after,
                why,
            });
        }
        notify(step, StepEvent::Started);
        // Intent before action: if the process dies during the step, the next look sees
        // an intent with no outcome and knows where it stopped (and what undoes it).
        if !matches!(step, Step::Record) {
            let mut e = event(runner, plan, step.kind(), EventKind::Intent);
            describe(&mut e, step, &scratch);
            e.detail = Some(serde_json::json!({"step": step, "undo": step.undo()}).to_string());
            unrecorded.must(write(db, &e).await)?;
        }
        let said = scratch.said.len();
        let started = Instant::now();
        let mut result = attempt(ctx, db, step, &mut scratch).await;
        let took = started.elapsed();
        if result.is_ok() {
            let mut e = event(runner, plan, step.kind(), EventKind::Succeeded);
            e.duration_ms = Some(took.as_millis() as i64);
            describe(&mut e, step, &scratch);
            // A request's steps say in their record what they did; a converge's record
            // keeps to versions, env keys and deployments, as its history always read.
            if plan.command != APPLY && scratch.said.len() > said && !matches!(step, Step::Record) {
                e.detail = Some(scratch.said[said..].join("; "));
            }
            // The step ran: if its record cannot be written, it still counts as done, so
            // the undo below puts it back.
            if let Err(err) = unrecorded.must(write(db, &e).await) {
                completed.push(step.clone());
                result = Err(StepError::Unrecorded(err));
            }
        }
        match result {
            Ok(()) => {
                notify(step, StepEvent::Succeeded(took));
                completed.push(step.clone());
            }
            Err(err) if err.class() == ErrorClass::Transient => {
                // Not the release's fault: nothing is undone and the client is not
                // Failed; the next run plans again from what is live.
                let message = err.to_string();
                notify(step, StepEvent::Failed(message.clone()));
                let after = completed.last().map_or("start", Step::kind).to_owned();
                let mut e = event(runner, plan, step.kind(), EventKind::Interrupted);
                e.duration_ms = Some(took.as_millis() as i64);
                e.error = Some(message.clone());
                describe(&mut e, step, &scratch);
                let mut record_errors = std::mem::take(&mut unrecorded.errors);
                keep(write(db, &e).await, &mut record_errors);
                let why = match err {
                    StepError::Stopped(_) => format!("shutdown during {}", step.kind()),
                    _ => format!("transient: {message} (during {})", step.kind()),
                };
                let mut e = event(runner, plan, &plan.command, EventKind::Manual);
                e.error = Some(message);
                e.detail = Some(format!(
                    "interrupted: {why} after {after}; nothing was undone; the next run continues from what is live"
                ));
                keep(write(db, &e).await, &mut record_errors);
                return Ok(Outcome::Interrupted {
                    plan: plan.clone(),
                    after,
                    why,
                });
            }
            Err(err) => {
                let class = err.class();
                let message = err.to_string();
                notify(step, StepEvent::Failed(message.clone()));
                // From here on a record that cannot be written is said, never a reason
                // to skip an undo.
                let mut record_errors = std::mem::take(&mut unrecorded.errors);
                let mut e = event(runner, plan, step.kind(), EventKind::Failed);
                e.duration_ms = Some(took.as_millis() as i64);
                e.error = Some(message.clone());
                describe(&mut e, step, &scratch);
                keep(write(db, &e).await, &mut record_errors);
                // A rebake judges a promote made by an earlier run: its own undo puts that
                // back, as a failed bake's promote is put back.
                let mut done = completed.clone();
                if matches!(step, Step::Rebake { .. }) && class == ErrorClass::Release {
                    done.push(step.clone());
                }
                // A failed rollout has shifted traffic (or tried to): its abort is undone
                // with the rest, and it keeps the schema as a failed bake does.
                if matches!(step, Step::Rollout { .. }) {
                    done.push(step.clone());
                }
                let decision = undo::decide(&done, client.config.policy.rollback);
                let mut undo_errors = Vec::new();
                for (kind, action) in &decision.run {
                    let result = steps::undo(ctx, db, action, &scratch).await;
                    let mut e = event(runner, plan, kind, EventKind::Undone);
                    // What production is after the undo: steward's own record of it.
                    if let Undo::PromotePrevious { deployment } = action {
                        e.deployment_id = deployment.clone();
                    }
                    if let Err(err) = &result {
                        e.error = Some(err.to_string());
                        undo_errors.push(format!("{kind}: {err}"));
                    }
                    keep(write(db, &e).await, &mut record_errors);
                    if let Some(step) = done.iter().find(|s| s.kind() == kind) {
                        notify(step, StepEvent::Undone);
                    }
                }
                let mut e = event(
                    runner,
                    plan,
                    &plan.command,
                    if decision.run.is_empty() {
                        EventKind::Failed
                    } else {
                        EventKind::RolledBack
                    },
                );
                e.detail = Some(step.kind().to_owned());
                // The run's record tells the truth about its undo: what was kept on
                // purpose, and what could not be put back (which status and the Failed
                // hold then show, for a person).
                let mut said = vec![message.clone()];
                said.extend(
                    decision
                        .kept
                        .iter()
                        .map(|(k, why)| format!("kept {k}: {why}")),
                );
                said.extend(undo_errors.iter().map(|e| format!("undo failed: {e}")));
                e.error = Some(said.join("; "));
                keep(write(db, &e).await, &mut record_errors);
                return Ok(Outcome::Failed {
                    plan: plan.clone(),
                    step: step.kind().to_owned(),
                    class,
                    error: message,
                    undo: decision,
                    undo_errors,
                    record_errors: record_errors.iter().map(ToString::to_string).collect(),
                });
            }
        }
    }
    Ok(Outcome::Applied {
        plan: plan.clone(),
        said: scratch.said,
    })
}

/// Check the step's guard and run it; a transient failure is tried again, with backoff,
/// up to the runner's `transient_retries` (the guard again too: the world may have moved
/// while the step waited). Shutdown stops the retries.
async fn attempt(
    ctx: &Ctx<'_>,
    db: &mut Db,
    step: &Step,
    scratch: &mut Scratch,
) -> Result<(), StepError> {
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(ctx.runner.transient_retries)
        .with_jitter()
        .build();
    loop {
        let result = match steps::check_guard(ctx, step, db).await {
            Ok(()) => steps::run_step(ctx, db, step, scratch).await,
            Err(err) => Err(err),
        };
        match result {
            Err(err) if err.class() == ErrorClass::Transient && !ctx.runner.stopping() => {
                let Some(after) = backoff.next() else {
                    return Err(err);
                };
                tracing::warn!(
                    client = %ctx.client.config.name,
                    step = step.kind(),
                    error = %err,
                    retry_in_ms = after.as_millis() as u64,
                    "transient failure; trying the step again"
                );
                tokio::time::sleep(after).await;
            }
            result => return result,
        }
    }
}

/// Append one event, trying a few times: a record that cannot be written is a failure to
/// report, and the writes around a failure must not give up at the first blip.
async fn write(db: &mut Db, e: &Event) -> Result<(), RecordError> {
    let mut tries = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_times(RECORD_RETRIES)
        .build();
    loop {
        let Some(conn) = db.records() else {
            return Err(RecordError::Unreachable);
        };
        match record::append(conn, e).await {
            Ok(()) => return Ok(()),
            Err(err) => match tries.next() {
                Some(after) => {
                    tracing::warn!(client = %e.client, step = %e.step, error = %err, "update record not written; retrying");
                    tokio::time::sleep(after).await;
                }
                None => return Err(err),
            },
        }
    }
}

/// Record writes that must succeed, unless the run may go on without its records (the
/// traffic switches): then each error is kept to be said, and the run goes on.
struct Unrecorded {
    required: bool,
    errors: Vec<RecordError>,
}

impl Unrecorded {
    fn must(&mut self, result: Result<(), RecordError>) -> Result<(), RecordError> {
        match result {
            Err(err) if !self.required => {
                tracing::warn!(error = %err, "update record not written; the run goes on");
                self.errors.push(err);
                Ok(())
            }
            result => result,
        }
    }
}

/// Further tries of a record write.
const RECORD_RETRIES: usize = 2;

fn keep(result: Result<(), RecordError>, errors: &mut Vec<RecordError>) {
    if let Err(err) = result {
        tracing::error!(error = %err, "update record not written");
        errors.push(err);
    }
}

/// Why `step` must not start now, if it must not: shutdown stops any step from starting;
/// a maintenance window that closed mid-plan stops the next change of a converge (a
/// running step, and the checks of a change already made, still finish). An urgent
/// change has no window, `--ignore-window` lifts it for the whole run, and an operator's
/// request is not held by windows at all.
fn interruption(
    runner: &Runner,
    client: &Client,
    plan: &Plan,
    step: &Step,
    now: chrono::DateTime<Utc>,
) -> Option<String> {
    if runner.stopping() {
        return Some("shutdown".to_owned());
    }
    if !step.changes() || runner.mode.ignores_window() || plan.command != APPLY {
        return None;
    }
    match client.config.schedule.state(now) {
        WindowState::Closed { next_open } => Some(match next_open {
            Some(at) => format!(
                "the maintenance window closed (next opens {})",
                at.format("%Y-%m-%d %H:%M UTC")
            ),
            None => "the maintenance window closed".to_owned(),
        }),
        WindowState::Open => None,
    }
}
