//! Carrying out a plan under the client's lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;

use super::record::{self, Event, EventKind};
use super::undo::{self, UndoPlan};
use super::{ApplyError, Prepared, SchemaCache, observe};
use crate::manifest::schedule::WindowState;
use crate::manifest::{Client, Fleet};
use crate::plan::{self, Guard, Mode, Plan, Step, Undo};
use crate::postgres::{self, Actor, Session};
use crate::secret::{Secret, SecretRef};
use crate::vercel::{self, EnvUndo};

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
            vercel: None,
            schema_cache: None,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEvent {
    Started,
    Succeeded(Duration),
    Failed(String),
    Undone,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to do.
    Converged(Plan),
    /// Held or blocked: nothing was run.
    NotRun(Plan),
    /// Every step ran.
    Applied(Plan),
    /// A step failed; the undo plan says what was put back and what was kept.
    Failed {
        plan: Plan,
        step: String,
        error: String,
        undo: UndoPlan,
        undo_errors: Vec<String>,
    },
    /// Shutdown arrived, or the maintenance window closed, between steps; the next run
    /// picks up from what is live.
    Interrupted {
        plan: Plan,
        after: String,
        why: String,
    },
}

impl Outcome {
    pub fn plan(&self) -> &Plan {
        match self {
            Outcome::Converged(p) | Outcome::NotRun(p) | Outcome::Applied(p) => p,
            Outcome::Failed { plan, .. } | Outcome::Interrupted { plan, .. } => plan,
        }
    }
}

/// What the steps produced that later steps (and undos) need.
#[derive(Default)]
struct Scratch {
    deployment: Option<vercel::Deployment>,
    env_undo: Option<EnvUndo>,
    /// The id of the backup this run took.
    backup: Option<String>,
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
    let look = |cache| {
        observe::prepare(
            fleet,
            client,
            &vercel_client,
            runner.mode.clone(),
            runner.wave_blocked.clone(),
            runner.revision.clone(),
            cache,
        )
    };
    let first = look(runner.schema_cache.as_deref()).await?;
    if let Some(on_observed) = &runner.on_observed {
        on_observed(&first);
    }
    if first.plan.steps.is_empty() {
        return Ok(Outcome::Converged(first.plan));
    }
    if !first.plan.runnable() {
        if let Some(expected) = expected_hash
            && expected != first.plan.hash
        {
            return Err(refused(&name, &first.plan, expected));
        }
        return Ok(Outcome::NotRun(first.plan));
    }

    // Take the lock, then plan again under it: whatever another runner did meanwhile is
    // now visible, and this plan is the one that runs.
    let mut session = Session::open(
        &name,
        &first.database_url,
        client.config.database.identity,
        runner.lock_timeout,
        false,
    )
    .await?;
    let prepared = look(None).await?;
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
    let outcome = run_steps(runner, fleet, client, &prepared, &mut session).await;
    session.close().await;
    outcome
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

fn event(runner: &Runner, plan: &Plan, step: &str, kind: EventKind) -> Event {
    let mut e = Event::new(&plan.client, step, kind, &runner.actor);
    e.plan_hash = Some(plan.hash.clone());
    e.release = Some(plan.release.clone());
    e.fleet_revision = runner.revision.clone();
    e
}

async fn run_steps(
    runner: &Runner,
    fleet: &Fleet,
    client: &Client,
    prepared: &Prepared,
    session: &mut Session,
) -> Result<Outcome, ApplyError> {
    let plan = &prepared.plan;
    record::ensure_table(session.connection()).await?;
    let mut started = event(runner, plan, "apply", EventKind::Started);
    if runner.mode.ignores_window()
        && let WindowState::Closed { .. } = client.config.schedule.state(Utc::now())
    {
        // The override of a hold is a decision someone made: the record names them.
        started.detail = Some(format!(
            "--ignore-window: started outside the maintenance window by {}",
            runner.actor
        ));
    }
    record::append(session.connection(), &started).await?;
    if let Some(rehearsal) = &plan.rehearsal {
        let mut e = event(runner, plan, "rehearse", EventKind::Succeeded);
        super::rehearsal::describe(&mut e, rehearsal);
        record::append(session.connection(), &e).await?;
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
        if let Some(why) = interruption(runner, client, step, Utc::now()) {
            let after = completed.last().map_or("start", Step::kind).to_owned();
            let mut e = event(runner, plan, "apply", EventKind::Manual);
            e.detail = Some(format!(
                "interrupted: {why} after {after}; the next run continues from what is live"
            ));
            record::append(session.connection(), &e).await?;
            return Ok(Outcome::Interrupted {
                plan: plan.clone(),
                after,
                why,
            });
        }
        notify(step, StepEvent::Started);
        let started = Instant::now();
        let result = match check_guard(step, prepared, session).await {
            Ok(()) => run_step(runner, fleet, client, prepared, session, step, &mut scratch).await,
            Err(err) => Err(err),
        };
        let took = started.elapsed();
        match result {
            Ok(()) => {
                notify(step, StepEvent::Succeeded(took));
                let mut e = event(runner, plan, step.kind(), EventKind::Succeeded);
                e.duration_ms = Some(took.as_millis() as i64);
                describe(&mut e, step, &scratch);
                record::append(session.connection(), &e).await?;
                completed.push(step.clone());
            }
            Err(message) => {
                notify(step, StepEvent::Failed(message.clone()));
                let mut e = event(runner, plan, step.kind(), EventKind::Failed);
                e.duration_ms = Some(took.as_millis() as i64);
                e.error = Some(message.clone());
                describe(&mut e, step, &scratch);
                record::append(session.connection(), &e).await?;
                let decision = undo::decide(&completed, client.config.policy.rollback);
                let mut undo_errors = Vec::new();
                for (kind, action) in &decision.run {
                    let result =
                        run_undo(runner, fleet, client, prepared, session, action, &scratch).await;
                    let mut e = event(runner, plan, kind, EventKind::Undone);
                    if let Err(err) = &result {
                        e.error = Some(err.clone());
                        undo_errors.push(format!("{kind}: {err}"));
                    }
                    record::append(session.connection(), &e).await?;
                    if let Some(step) = completed.iter().find(|s| s.kind() == kind) {
                        notify(step, StepEvent::Undone);
                    }
                }
                let mut e = event(
                    runner,
                    plan,
                    "apply",
                    if decision.run.is_empty() {
                        EventKind::Failed
                    } else {
                        EventKind::RolledBack
                    },
                );
                e.error = Some(message.clone());
                e.detail = Some(step.kind().to_owned());
                let kept: Vec<String> = decision
                    .kept
                    .iter()
                    .map(|(k, why)| format!("kept {k}: {why}"))
                    .collect();
                if !kept.is_empty() {
                    e.error = Some(format!("{message}; {}", kept.join("; ")));
                }
                record::append(session.connection(), &e).await?;
                return Ok(Outcome::Failed {
                    plan: plan.clone(),
                    step: step.kind().to_owned(),
                    error: message,
                    undo: decision,
                    undo_errors,
                });
            }
        }
    }
    Ok(Outcome::Applied(plan.clone()))
}

/// Why `step` must not start now, if it must not: shutdown stops any step from starting;
/// a maintenance window that closed mid-plan stops the next change (a running step, and
/// the checks of a change already made, still finish). An urgent change has no window,
/// and `--ignore-window` lifts it for the whole run.
fn interruption(
    runner: &Runner,
    client: &Client,
    step: &Step,
    now: chrono::DateTime<Utc>,
) -> Option<String> {
    if runner.stopping() {
        return Some("shutdown".to_owned());
    }
    if !step.changes() || runner.mode.ignores_window() {
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

/// `Session::restore` of a backup this client owns: its sidecar and checksum are checked
/// before the archive is read; the records survive inside the restore (see `backup::restore`).
async fn restore_checked(
    session: &mut Session,
    fleet: &Fleet,
    client: &Client,
    prepared: &Prepared,
    backup: &str,
    actor: Actor<'_>,
) -> Result<(), String> {
    let name = &client.config.name;
    let (info, file) =
        postgres::backup::find(name, &fleet.backups_dir, backup).map_err(|e| e.to_string())?;
    postgres::backup::check(name, &info, &file)
        .await
        .map_err(|e| e.to_string())?;
    session
        .restore(
            &prepared.database_url,
            &file,
            client.config.database.identity,
            &fleet.catalog,
            actor,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Versions, env keys and deployment ids go in the record; never values.
fn describe(e: &mut Event, step: &Step, scratch: &Scratch) {
    match step {
        Step::MigrateUp { versions, .. } | Step::MigrateDown { versions, .. } => {
            e.versions = versions.iter().map(ToString::to_string).collect()
        }
        Step::SetEnv { changes } => {
            e.env_keys = changes
                .iter()
                .map(|c| format!("{}{}", c.action.sign(), c.key))
                .collect()
        }
        Step::Deploy { .. }
        | Step::WaitReady
        | Step::HealthCheck { .. }
        | Step::Promote { .. }
        | Step::Bake { .. } => {
            e.deployment_id = scratch.deployment.as_ref().map(|d| d.id.clone());
        }
        _ => {}
    }
}

/// Check a step's precondition right before it runs.
async fn check_guard(
    step: &Step,
    prepared: &Prepared,
    session: &mut Session,
) -> Result<(), String> {
    match step.guard() {
        Guard::None | Guard::Identity | Guard::DeploymentHealthy => Ok(()),
        Guard::SchemaAt { version } => {
            let current = session.current_version().await.map_err(|e| e.to_string())?;
            if current == version {
                Ok(())
            } else {
                Err(format!(
                    "guard: the schema moved to {current:?} since planning (expected {version:?}); not touching it"
                ))
            }
        }
        Guard::EnvUnchanged => {
            let now = vercel::observe(&prepared.vercel, &prepared.project.id)
                .await
                .map_err(|e| e.to_string())?;
            if plan::env_changes(&prepared.desired.env, &now.env)
                == plan::env_changes(&prepared.desired.env, &prepared.observed.env)
            {
                Ok(())
            } else {
                Err("guard: the project's env changed since planning; not overwriting someone else's change".to_owned())
            }
        }
        Guard::ProductionIs { deployment } => {
            let project = prepared
                .vercel
                .project(&prepared.project.id)
                .await
                .map_err(|e| e.to_string())?;
            let current = project.production().map(|d| d.id.clone());
            if current == deployment {
                Ok(())
            } else {
                Err(format!(
                    "guard: production moved to {current:?} since planning (expected {deployment:?}); not promoting over it"
                ))
            }
        }
    }
}

async fn run_step(
    runner: &Runner,
    fleet: &Fleet,
    client: &Client,
    prepared: &Prepared,
    session: &mut Session,
    step: &Step,
    scratch: &mut Scratch,
) -> Result<(), String> {
    let name = &client.config.name;
    let actor = Actor {
        name: &runner.actor,
        revision: runner.revision.as_deref(),
    };
    let health = &client.config.policy.health;
    let routes = &fleet.manifest.spec.vercel.connect_to;
    match step {
        Step::Preflight => session
            .guard_clean(&fleet.catalog)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Step::Backup { version } => {
            let info = postgres::backup::take(
                name,
                &prepared.database_url,
                &fleet.backups_dir,
                version.as_ref(),
            )
            .await
            .map_err(|e| e.to_string())?;
            scratch.backup = Some(info.id);
            Ok(())
        }
        Step::MigrateUp { to, .. } => session
            .migrate_up(&fleet.catalog, to, actor)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Step::MigrateDown { to, .. } => session
            .migrate_down(&fleet.catalog, Some(to), actor)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Step::RestoreBackup { backup, .. } => {
            restore_checked(session, fleet, client, prepared, backup, actor).await
        }
        Step::Verify { version } => {
            let report = postgres::verify(
                session.connection(),
                name,
                &fleet.catalog,
                &client.config.database,
                Some(version),
            )
            .await
            .map_err(|e| e.to_string())?;
            if report.passed() {
                Ok(())
            } else {
                Err(format!(
                    "verify failed: {}",
                    report
                        .failures()
                        .iter()
                        .map(|c| format!("{}: {}", c.name, c.detail))
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            }
        }
        Step::SetEnv { changes } => {
            let current = prepared
                .vercel
                .env_values(&prepared.project.id)
                .await
                .map_err(|e| e.to_string())?;
            let key = &prepared.fingerprint_key;
            let previous: Vec<(String, Secret, bool, String)> = current
                .into_iter()
                .filter_map(|(name, value, kind, comment)| match value {
                    Some(value) => {
                        let fp = crate::secret::fingerprint(key, &value);
                        Some((name, Secret::new(value), kind == "sensitive", fp))
                    }
                    // A sensitive value cannot be read back: re-read it from the secret
                    // reference the previous revision wrote it from, if steward's
                    // environment still holds that exact value.
                    None => {
                        let (fp, source) = vercel::comment_source(comment.as_deref())?;
                        let value = SecretRef::env(source.clone()).resolve().ok();
                        match value {
                            Some(v) if crate::secret::fingerprint(key, v.expose()) == fp => {
                                Some((name, v, true, format!("{fp};src={source}")))
                            }
                            _ => {
                                tracing::warn!(
                                    env = %name,
                                    source = %source,
                                    "the previous value of this sensitive variable is no longer in steward's environment; an undo cannot restore it"
                                );
                                None
                            }
                        }
                    }
                })
                .collect();
            let values: Vec<(String, Secret, bool, String)> = prepared
                .values
                .0
                .iter()
                .map(|(k, v, sensitive, source)| {
                    let fp = crate::secret::fingerprint(key, v.expose());
                    let tag = match source {
                        Some(source) => format!("{fp};src={source}"),
                        None => fp,
                    };
                    (k.clone(), v.clone(), *sensitive, tag)
                })
                .collect();
            let undo = vercel::apply_env(
                &prepared.vercel,
                &prepared.project.id,
                changes,
                &values,
                &previous,
            )
            .await
            .map_err(|e| e.to_string())?;
            scratch.env_undo = Some(undo);
            Ok(())
        }
        Step::Deploy { sha, .. } => {
            let env_changed = prepared
                .plan
                .steps
                .iter()
                .any(|s| matches!(s, Step::SetEnv { .. }));
            let d = vercel::deploy(&prepared.vercel, &prepared.project, sha, env_changed)
                .await
                .map_err(|e| e.to_string())?;
            scratch.deployment = Some(d);
            Ok(())
        }
        Step::WaitReady => {
            let id = scratch
                .deployment
                .as_ref()
                .map(|d| d.id.clone())
                .ok_or("no deployment to wait for")?;
            let d = vercel::wait_ready(&prepared.vercel, &id, runner.build_timeout)
                .await
                .map_err(|e| e.to_string())?;
            scratch.deployment = Some(d);
            Ok(())
        }
        Step::HealthCheck { .. } => {
            let host = scratch
                .deployment
                .as_ref()
                .and_then(|d| d.url.clone())
                .ok_or("the deployment has no URL")?;
            vercel::health::check(&host, health, routes)
                .await
                .map_err(|e| e.to_string())
        }
        Step::Promote { .. } => {
            let id = scratch
                .deployment
                .as_ref()
                .map(|d| d.id.clone())
                .ok_or("no deployment to promote")?;
            vercel::promote(&prepared.vercel, &prepared.project.id, &id)
                .await
                .map_err(|e| e.to_string())
        }
        Step::Bake { duration } => {
            let host = scratch
                .deployment
                .as_ref()
                .and_then(|d| d.url.clone())
                .ok_or("the deployment has no URL")?;
            let until = Instant::now() + *duration;
            let every = (*duration / 3).clamp(Duration::from_millis(200), Duration::from_secs(10));
            loop {
                vercel::health::check(&host, health, routes)
                    .await
                    .map_err(|e| format!("bake: {e}"))?;
                if Instant::now() >= until || runner.stopping() {
                    return Ok(());
                }
                tokio::time::sleep(every.min(until.saturating_duration_since(Instant::now())))
                    .await;
            }
        }
        Step::Record => {
            let mut e = Event::new(name, "apply", EventKind::Completed, &runner.actor);
            e.plan_hash = Some(prepared.plan.hash.clone());
            e.release = Some(prepared.plan.release.clone());
            e.fleet_revision = runner.revision.clone();
            e.deployment_id = scratch.deployment.as_ref().map(|d| d.id.clone());
            let c = &prepared.plan.changes;
            e.versions = c.schema.iter().map(|(_, to)| to.to_string()).collect();
            e.env_keys = c
                .env
                .iter()
                .map(|x| format!("{}{}", x.action.sign(), x.key))
                .collect();
            e.detail = Some(format!(
                "completed at {}",
                Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
            ));
            record::append(session.connection(), &e)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

async fn run_undo(
    runner: &Runner,
    fleet: &Fleet,
    client: &Client,
    prepared: &Prepared,
    session: &mut Session,
    action: &Undo,
    scratch: &Scratch,
) -> Result<(), String> {
    let actor = Actor {
        name: &runner.actor,
        revision: runner.revision.as_deref(),
    };
    match action {
        Undo::Nothing => Ok(()),
        Undo::MigrateDownTo { version } => match session
            .migrate_down(&fleet.catalog, version.as_ref(), actor)
            .await
        {
            Ok(_) => Ok(()),
            // An irreversible migration: the backup taken by this run puts it back.
            Err(err) if err.is_refusal() && scratch.backup.is_some() => {
                let backup = scratch.backup.as_deref().ok_or("no backup")?;
                restore_checked(session, fleet, client, prepared, backup, actor)
                    .await
                    .map_err(|e| format!("{err}; restore failed too: {e}"))
            }
            Err(err) => Err(err.to_string()),
        },
        Undo::MigrateUpTo { version } => session
            .migrate_up(&fleet.catalog, version, actor)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Undo::RestoreTakenBackup => match &scratch.backup {
            Some(backup) => restore_checked(session, fleet, client, prepared, backup, actor).await,
            None => Err("no backup was taken before the restore; nothing to put back".to_owned()),
        },
        Undo::RestoreEnv => match &scratch.env_undo {
            Some(undo) => vercel::undo_env(&prepared.vercel, &prepared.project.id, undo)
                .await
                .map_err(|e| e.to_string()),
            None => Ok(()),
        },
        Undo::PromotePrevious { deployment } => match deployment {
            Some(previous) => vercel::rollback(&prepared.vercel, &prepared.project.id, previous)
                .await
                .map_err(|e| e.to_string()),
            None => Ok(()),
        },
    }
}
