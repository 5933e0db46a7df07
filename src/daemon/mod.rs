//! The daemon: watch the fleet checkout, and loop — per client observe, plan and apply
//! when allowed — with bounded concurrency, waves, sharding, backoff on transient errors,
//! a status server, and graceful shutdown that finishes the running step.

pub mod dashboard;
mod listen;
mod metrics;
mod server;
pub mod shard;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{RwLock, Semaphore, mpsc, watch};
use tracing::Instrument;

use crate::apply::{self, ApplyError, Outcome, Runner, SchemaCache};
use crate::exit::Exit;
use crate::manifest::schedule::WindowState;
use crate::manifest::{self, Client, Fleet, LoadOptions};
pub use crate::notify::{self as notifications, Notifier};
use crate::plan::{Hold, Mode, Outcome as PlanOutcome};
use crate::status::Phase;
pub use listen::ServerLimits;
pub use metrics::Metrics;
pub use shard::Shard;

/// How the daemon runs.
#[derive(Clone)]
pub struct Settings {
    pub fleet_dir: PathBuf,
    pub interval: Duration,
    /// Observe each converged client's database at least this often; between, a pass
    /// reuses the last live observation (see `apply::cache`). Zero: every pass.
    pub db_resync: Duration,
    pub concurrency: usize,
    pub shard: Shard,
    pub once: bool,
    /// `git pull --ff-only` before each resync (the daemon owns its checkout).
    pub pull: bool,
    pub actor: String,
    pub on_step: Option<apply::OnStep>,
    /// Called after each client's reconcile with its new standing (progress, summaries).
    pub on_reconciled: Option<OnReconciled>,
}

/// See [`Settings::on_reconciled`].
pub type OnReconciled = Arc<dyn Fn(&str, &ClientStatus) + Send + Sync>;

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("fleet_dir", &self.fleet_dir)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// One client's standing, for `/status` and `--once`'s exit code.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientStatus {
    pub phase: Phase,
    pub reason: String,
    pub wave: Option<String>,
    pub last_change: Option<String>,
    pub next_window: Option<String>,
    /// The last failure (Failed or Error) and when it happened; cleared on converging.
    pub last_error: Option<LastError>,
    /// When an Error is tried again (the backoff's next attempt).
    pub next_retry: Option<chrono::DateTime<chrono::Utc>>,
    /// The fleet revision this client last converged on.
    #[serde(skip)]
    pub converged_on: Option<Option<String>>,
    #[serde(skip)]
    retry_at: Option<Instant>,
    #[serde(skip)]
    failures: u32,
    /// The last failure notified, so a retrying error is announced once, not every pass.
    #[serde(skip)]
    notified_failure: Option<String>,
    /// A rollout running now: its stage, percent and the canary's error rate so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<apply::RolloutProgress>,
}

/// A failure as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub at: chrono::DateTime<chrono::Utc>,
    pub message: String,
}

/// State shared with the status server.
#[derive(Debug)]
pub struct Shared {
    pub loaded: bool,
    pub last_loop: Option<Instant>,
    pub interval: Duration,
    pub clients: BTreeMap<String, ClientStatus>,
    /// The fleet revision (Git HEAD) of the last pass.
    pub revision: Option<String>,
    /// The daemon's metrics registry; cloning shares it.
    pub metrics: Metrics,
    /// The fleet of the last pass (desired state for the dashboard; no secret values).
    pub fleet: Option<Arc<Fleet>>,
    /// Which clients this replica owns.
    pub shard: Shard,
    /// Each client's last look and running step, for the dashboard.
    pub live: Arc<dashboard::Live>,
    /// Wakes the loop for an immediate resync (a verified GitHub push webhook).
    pub resync: Arc<tokio::sync::Notify>,
    /// The GitHub webhook secret; webhooks are refused without one.
    pub webhook_secret: Option<crate::secret::Secret>,
}

/// Clients as `/status` shows them: one whose Vercel calls wait on a rate-limit window
/// right now says so, whatever its last pass ended with.
pub fn clients_now(shared: &Shared) -> BTreeMap<String, ClientStatus> {
    let mut clients = shared.clients.clone();
    for (name, rollout) in shared.live.rollouts() {
        clients.entry(name).or_default().rollout = Some(rollout);
    }
    for (name, waiting) in crate::vercel::limiter::waiting() {
        let status = clients.entry(name).or_default();
        status.phase = Phase::RateLimited;
        status.reason = format!(
            "waiting for Vercel's rate limit on {} to reset at {}",
            waiting.endpoint,
            chrono::DateTime::<chrono::Utc>::from(waiting.until).format("%H:%M:%S UTC")
        );
    }
    clients
}

/// Serve the status server on `addr`, within `limits`, until the process ends.
pub async fn serve(
    addr: &str,
    shared: Arc<RwLock<Shared>>,
    limits: ServerLimits,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(listen::serve(listener, server::router(shared), limits));
    Ok(())
}

impl Shared {
    /// Whether this replica owns `client` (`--shard`).
    pub fn owns(&self, client: &str) -> bool {
        self.shard.owns(client)
    }
}

pub fn shared(interval: Duration) -> Arc<RwLock<Shared>> {
    Arc::new(RwLock::new(Shared {
        loaded: false,
        last_loop: None,
        interval,
        clients: BTreeMap::new(),
        revision: None,
        metrics: Metrics::new(),
        fleet: None,
        shard: Shard::ALL,
        live: Arc::default(),
        resync: Arc::default(),
        webhook_secret: None,
    }))
}

/// The checkout's HEAD, resolved through a git-sync symlink if there is one.
pub fn revision(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `git pull --ff-only` in the checkout, for a daemon that owns its checkout (`--pull`)
/// rather than sharing it with git-sync. A failure is logged; the pass goes on with what
/// is checked out.
fn pull(dir: &Path) {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["pull", "--ff-only", "--quiet"])
        .stdin(std::process::Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::warn!(
            stderr = %String::from_utf8_lossy(&out.stderr).trim(),
            "git pull failed; keeping the current checkout"
        ),
        Err(err) => tracing::warn!(%err, "cannot run git pull"),
    }
}

/// Watch the checkout, its migrations, and the folder holding it (so a git-sync symlink
/// swap is seen). Only changes count: reads (steward's own loads raise inotify open and
/// close events) and steward's own backups would otherwise wake the loop forever.
fn watch_fleet(dir: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let link = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| link.clone());
    let fleet = Fleet::load(dir).ok();
    let migrations = fleet
        .as_ref()
        .and_then(|f| std::fs::canonicalize(&f.migrations_dir).ok());
    let backups = fleet.as_ref().map(|f| {
        std::fs::canonicalize(&f.backups_dir).unwrap_or_else(|_| f.backups_dir.dir.clone())
    });
    let (watched_dir, watched_link) = (resolved.clone(), link.clone());
    let watched_migrations = migrations.clone();
    let relevant = move |path: &Path| {
        let inside = path.starts_with(&watched_dir)
            || watched_migrations
                .as_ref()
                .is_some_and(|m| path.starts_with(m));
        (inside && !backups.as_ref().is_some_and(|b| path.starts_with(b))) || path == watched_link
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, EventKind::Access(_))
            && event.paths.iter().any(|p| relevant(p))
        {
            let _ = tx.try_send(());
        }
    })
    .ok()?;
    let _ = watcher.watch(&resolved, RecursiveMode::Recursive);
    if let Some(parent) = link.parent() {
        let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
    }
    if let Some(migrations) = migrations {
        let _ = watcher.watch(&migrations, RecursiveMode::Recursive);
    }
    Some(watcher)
}

/// Run until shutdown (or one pass with `--once`). Returns the `--once` exit code.
pub async fn run(
    settings: Settings,
    shared: Arc<RwLock<Shared>>,
    stop: watch::Receiver<bool>,
) -> Exit {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let watch = |tx| {
        (!settings.once)
            .then(|| watch_fleet(&settings.fleet_dir, tx))
            .flatten()
    };
    let mut _watcher = watch(tx.clone());
    let mut watched = std::fs::canonicalize(&settings.fleet_dir).ok();
    let mut last_good: HashMap<String, Client> = HashMap::new();
    let metrics = shared.read().await.metrics.clone();
    let delivered = metrics.clone();
    let notifier = Notifier::new(Some(Arc::new(move |event, outcome| {
        delivered.notification(event, outcome);
    })));
    // `--once` is a full resync by definition: one pass, every database looked at live.
    // The cache is there all the same: it counts the looks for the metrics.
    let max_age = if settings.once {
        Duration::ZERO
    } else {
        settings.db_resync
    };
    let schema_cache = Some(Arc::new(
        SchemaCache::new(max_age).with_counters(metrics.observation_counters()),
    ));
    // A pass woken by a client's retry time (a run cut short by a transient fault, an
    // error's backoff, a rate limit's reset) runs only the clients that are due.
    let mut retries_only = false;
    loop {
        let started = Instant::now();
        let exit = pass(
            &settings,
            &shared,
            &stop,
            retries_only,
            &mut last_good,
            &notifier,
            schema_cache.clone(),
        )
        .await;
        shared.write().await.last_loop = Some(Instant::now());
        metrics.loop_done(started.elapsed());
        // A git-sync symlink swap moved the checkout: watch the new worktree instead.
        let now_at = std::fs::canonicalize(&settings.fleet_dir).ok();
        if !settings.once && now_at != watched {
            _watcher = watch(tx.clone());
            watched = now_at;
        }
        if settings.once || *stop.borrow() {
            notifier.flush(Duration::from_secs(15)).await;
            return if settings.once { exit } else { Exit::Success };
        }
        let mut stop_wait = stop.clone();
        let resync = shared.read().await.resync.clone();
        let next_retry = shared
            .read()
            .await
            .clients
            .values()
            .filter_map(|c| c.retry_at)
            .min();
        retries_only = false;
        tokio::select! {
            _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now).into()),
                if next_retry.is_some_and(|at| at < Instant::now() + settings.interval) => {
                retries_only = true;
            }
            _ = resync.notified() => {
                tracing::info!("webhook: resyncing");
                if settings.pull {
                    pull(&settings.fleet_dir);
                }
            }
            _ = tokio::time::sleep(settings.interval) => {
                if settings.pull {
                    pull(&settings.fleet_dir);
                }
            }
            _ = rx.recv() => {
                // Debounce: a `git pull` is a burst of writes; act once it settles.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                tracing::info!("fleet checkout changed; resyncing");
            }
            _ = stop_wait.changed() => {
                notifier.flush(Duration::from_secs(15)).await;
                return Exit::Success;
            }
        }
    }
}

/// One pass over the fleet, wave by wave.
async fn pass(
    settings: &Settings,
    shared: &Arc<RwLock<Shared>>,
    stop: &watch::Receiver<bool>,
    retries_only: bool,
    last_good: &mut HashMap<String, Client>,
    notifier: &Notifier,
    schema_cache: Option<Arc<SchemaCache>>,
) -> Exit {
    let loaded = manifest::load(&settings.fleet_dir, LoadOptions::default());
    let mut invalid_manifests = false;
    for diagnostic in loaded.errors() {
        invalid_manifests = true;
        tracing::error!(%diagnostic, "manifest error; that client keeps its last good desired state");
        if settings.once {
            eprintln!("{diagnostic}");
        }
    }
    let Some(mut fleet) = loaded.fleet else {
        return Exit::Error;
    };
    // A client whose manifest stopped parsing keeps its last good desired state.
    for name in &loaded.invalid {
        if let Some(good) = last_good.get(name) {
            fleet.clients.insert(name.clone(), good.clone());
        }
    }
    for (name, client) in &fleet.clients {
        last_good.insert(name.clone(), client.clone());
    }
    notifier.configure(&fleet);
    let revision = revision(&settings.fleet_dir);
    {
        let mut s = shared.write().await;
        s.loaded = true;
        s.revision = revision.clone();
        s.metrics.set_revision(revision.as_deref());
    }
    let metrics = shared.read().await.metrics.clone();
    // One client per pass: its connection pool then serves every client of the fleet.
    let vercel = apply::prepare_client(&fleet)
        .ok()
        .map(|client| client.with_response_counter(metrics.vercel_responses()));
    let fleet = Arc::new(fleet);
    {
        let mut s = shared.write().await;
        s.fleet = Some(fleet.clone());
        s.shard = settings.shard;
    }
    let mut waves: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (name, client) in &fleet.clients {
        if settings.shard.owns(name) {
            waves
                .entry(fleet.wave_index(client))
                .or_default()
                .push(name.clone());
        }
    }
    let max_failures = fleet.manifest.spec.rollout.max_failures;
    let mut blocked: Option<String> = None;
    let mut exit = if invalid_manifests {
        Exit::Error
    } else {
        Exit::Success
    };
    let semaphore = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    for (wave, names) in waves {
        let wave_name = fleet
            .manifest
            .spec
            .waves
            .get(wave)
            .cloned()
            .unwrap_or_else(|| "(unassigned)".to_owned());
        let mut tasks = Vec::new();
        for name in names {
            if *stop.borrow() {
                break;
            }
            let retry_at = shared
                .read()
                .await
                .clients
                .get(&name)
                .and_then(|c| c.retry_at);
            let due = match retry_at {
                Some(at) => at <= Instant::now(),
                None => !retries_only,
            };
            if !due {
                continue;
            }
            let context = Context {
                fleet: fleet.clone(),
                settings: settings.clone(),
                shared: shared.clone(),
                stop: stop.clone(),
                revision: revision.clone(),
                notifier: notifier.clone(),
                vercel: vercel.clone(),
                schema_cache: schema_cache.clone(),
            };
            let (blocked, semaphore) = (blocked.clone(), semaphore.clone());
            // Futures polled together on this task (bounded by the semaphore): the apply
            // future borrows its fleet and connection, so it stays on one task.
            tasks.push(async move {
                let _permit = semaphore.acquire_owned().await;
                let span = tracing::info_span!("reconcile", client = %name);
                reconcile(context, name, blocked).instrument(span).await
            });
        }
        let mut failures = 0;
        let mut unconverged = 0;
        for result in futures::future::join_all(tasks).await {
            match result {
                Exit::Success => {}
                Exit::Changes => unconverged += 1,
                other => {
                    failures += 1;
                    exit = exit.worst(other);
                }
            }
        }
        exit = exit.worst(if unconverged > 0 {
            Exit::Changes
        } else {
            Exit::Success
        });
        // A later wave starts this revision only when this one converged and baked on it.
        if failures > max_failures {
            blocked = Some(format!(
                "rollout halted: {failures} client(s) failed in wave `{wave_name}` (spec.rollout.maxFailures is {max_failures})"
            ));
        } else if blocked.is_none() && (failures > 0 || unconverged > 0) {
            blocked = Some(format!(
                "wave `{wave_name}`: {} client(s) not yet converged on this revision",
                failures + unconverged
            ));
        }
    }
    let s = shared.read().await;
    let mut phases: BTreeMap<String, u64> = BTreeMap::new();
    for c in s.clients.values() {
        *phases.entry(c.phase.to_string()).or_default() += 1;
    }
    s.metrics.set_phases(&phases);
    exit
}

/// What every reconcile of one pass shares.
struct Context {
    fleet: Arc<Fleet>,
    settings: Settings,
    shared: Arc<RwLock<Shared>>,
    stop: watch::Receiver<bool>,
    revision: Option<String>,
    notifier: Notifier,
    vercel: Option<crate::vercel::VercelClient>,
    schema_cache: Option<Arc<SchemaCache>>,
}

/// Reconcile one client: observe, plan (as the daemon), apply when allowed.
async fn reconcile(context: Context, name: String, blocked: Option<String>) -> Exit {
    let Context {
        fleet,
        settings,
        shared,
        stop,
        revision,
        notifier,
        vercel,
        schema_cache,
    } = context;
    let Some(client) = fleet.clients.get(&name) else {
        return Exit::Error;
    };
    let mut runner = Runner::new(settings.actor.clone(), Mode::Daemon);
    runner.revision = revision.clone();
    runner.stop = Some(stop);
    runner.wave_blocked = blocked;
    runner.vercel = vercel;
    runner.schema_cache = schema_cache;
    let (metrics, live) = {
        let s = shared.read().await;
        (s.metrics.clone(), s.live.clone())
    };
    let (view_live, view_fleet) = (live.clone(), fleet.clone());
    runner.on_observed = Some(Arc::new(move |prepared: &apply::Prepared| {
        let view = dashboard::ClientView::of(prepared, &view_fleet.catalog, chrono::Utc::now());
        view_live.set_view(&prepared.plan.client, view);
    }));
    let stage_live = live.clone();
    let user_hook = settings.on_step.clone();
    runner.on_step = Some(Arc::new(
        move |client: &str, step: &crate::plan::Step, event: apply::StepEvent| {
            let outcome = match &event {
                apply::StepEvent::Started | apply::StepEvent::Rollout(_) => None,
                apply::StepEvent::Succeeded(_) => Some("succeeded"),
                apply::StepEvent::Failed(_) => Some("failed"),
                apply::StepEvent::Undone => Some("undone"),
            };
            stage_live.set_stage(
                client,
                match &event {
                    apply::StepEvent::Started => Some(step.to_string()),
                    apply::StepEvent::Undone => Some(format!("undoing {}", step.kind())),
                    apply::StepEvent::Rollout(progress) => Some(progress.to_string()),
                    _ => None,
                },
            );
            // A rollout's live stage, percent and error rate, for `/status` and
            // `/metrics`, until its step ends.
            match &event {
                apply::StepEvent::Rollout(progress) => {
                    stage_live.set_rollout(client, Some(progress.clone()));
                    metrics.rollout(client, Some(progress));
                }
                apply::StepEvent::Succeeded(_) | apply::StepEvent::Failed(_)
                    if matches!(step, crate::plan::Step::Rollout { .. }) =>
                {
                    stage_live.set_rollout(client, None);
                    metrics.rollout(client, None);
                }
                _ => {}
            }
            // An atomic counter: recorded even while the status server reads the state.
            if let Some(outcome) = outcome {
                metrics.step(step.kind(), outcome);
            }
            if let Some(hook) = &user_hook {
                hook(client, step, event);
            }
        },
    ));
    let (start_notifier, start_revision) = (notifier.clone(), revision.clone());
    runner.on_start = Some(Arc::new(move |plan: &crate::plan::Plan| {
        start_notifier.send(notifications::Message::before_update(
            plan,
            start_revision.clone(),
        ));
    }));
    let started = Instant::now();
    let result = apply::execute(&runner, &fleet, client, None).await;
    if let Ok(outcome) = &result
        && let Some(change) = &outcome.plan().outside_change
    {
        notifier.send(notifications::Message::outside_change(
            outcome.plan(),
            change,
            revision.clone(),
        ));
    }
    live.set_stage(&name, None);
    let next_window = match client.config.schedule.state(chrono::Utc::now()) {
        WindowState::Open => None,
        WindowState::Closed { next_open } => {
            next_open.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        }
    };
    let now = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let mut s = shared.write().await;
    s.metrics.observe_reconcile(started.elapsed().as_secs_f64());
    let status = s.clients.entry(name.clone()).or_default();
    status.next_window = next_window;
    status.wave = client.config.wave.clone();
    // The plan a failure is about: its release keys the failure notification, so the
    // failure and the hold that remembers it later are announced once.
    let mut failed_plan: Option<crate::plan::Plan> = None;
    let (phase, reason, exit) = match result {
        Ok(Outcome::Converged(_)) => (Phase::Converged, String::new(), Exit::Success),
        Ok(Outcome::Applied { plan, .. }) => {
            status.last_change = Some(format!("{now}: applied plan {}", plan.hash));
            notifier.send(notifications::Message::after_update(
                &plan,
                revision.clone(),
            ));
            (Phase::Converged, String::new(), Exit::Success)
        }
        Ok(Outcome::NotRun(plan)) => {
            let failed = plan.holds.iter().any(|h| matches!(h, Hold::Failed { .. }));
            // Held only by the window: tell the client's contacts once what is coming.
            if let [Hold::OutsideWindow { next_open, .. }] = plan.holds.as_slice()
                && plan.blocks.is_empty()
                && !plan.steps.is_empty()
            {
                notifier.send(notifications::Message::scheduled(
                    &plan,
                    *next_open,
                    revision.clone(),
                ));
            }
            let reasons: Vec<String> = plan
                .holds
                .iter()
                .map(ToString::to_string)
                .chain(plan.blocks.iter().map(ToString::to_string))
                .collect();
            if failed {
                failed_plan = Some(plan.clone());
                (Phase::Failed, reasons.join("; "), Exit::Error)
            } else if plan.outcome() == PlanOutcome::Blocked {
                (Phase::Holding, reasons.join("; "), Exit::Refused)
            } else {
                (Phase::Holding, reasons.join("; "), Exit::Changes)
            }
        }
        Ok(Outcome::Interrupted { after, why, .. }) if why.starts_with("transient: ") => {
            // Steward's side failed, not the release: try this client again soon, sooner
            // than its next regular pass, backing off while the fault lasts.
            status.failures += 1;
            let wait = retry_schedule(TRANSIENT_BASE, status.failures);
            status.retry_at = Some(Instant::now() + wait);
            status.next_retry = chrono::Duration::from_std(wait)
                .ok()
                .map(|after| chrono::Utc::now() + after);
            tracing::warn!(why = %why, retry_in_s = wait.as_secs(), "run interrupted by a transient fault; retrying");
            (
                Phase::Pending,
                format!(
                    "retrying in {} after: {why} (stopped after {after})",
                    crate::progress::duration(wait)
                ),
                Exit::Changes,
            )
        }
        Ok(Outcome::Interrupted { after, why, .. }) => (
            Phase::Pending,
            format!("interrupted: {why} after {after}"),
            Exit::Changes,
        ),
        Ok(Outcome::Failed {
            plan,
            step,
            error,
            undo,
            undo_errors,
            ..
        }) => {
            if !undo.run.is_empty() {
                notifier.send(notifications::Message::rollback(
                    &plan,
                    &step,
                    undo.run.len(),
                    &undo_errors,
                    revision.clone(),
                ));
            }
            status.last_change = Some(format!(
                "{now}: failed at {step}, rolled back {} step(s)",
                undo.run.len() - undo_errors.len().min(undo.run.len())
            ));
            let mut reason = notifications::step_failed(&step, &error);
            for failed in &undo_errors {
                reason.push_str(&format!("; undo failed: {failed}"));
            }
            failed_plan = Some(plan);
            (Phase::Failed, reason, Exit::Error)
        }
        Err(err) if err.rate_limited_until().is_some() => {
            // Not a failure: Vercel's window is spent. Try again once it has reset.
            let until = err
                .rate_limited_until()
                .unwrap_or_else(std::time::SystemTime::now);
            let wait = until
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            status.retry_at = Some(Instant::now() + wait);
            tracing::warn!(error = %err, retry_in_s = wait.as_secs(), "waiting on Vercel's rate limit");
            (Phase::RateLimited, err.to_string(), Exit::Changes)
        }
        Err(err) => {
            status.failures += 1;
            let backoff = backoff(&err, status.failures);
            status.retry_at = Some(Instant::now() + backoff);
            status.next_retry = chrono::Duration::from_std(backoff)
                .ok()
                .map(|after| chrono::Utc::now() + after);
            tracing::warn!(error = %err, retry_in_s = backoff.as_secs(), "reconcile failed");
            (
                Phase::Error,
                err.to_string(),
                if err.is_refusal() {
                    Exit::Refused
                } else {
                    Exit::Error
                },
            )
        }
    };
    let retrying = phase == Phase::Pending && reason.starts_with("retrying in ");
    if phase != Phase::Error && phase != Phase::RateLimited && !retrying {
        status.failures = 0;
        status.retry_at = None;
        status.next_retry = None;
    }
    if phase.needs_attention() {
        status.last_error = Some(LastError {
            at: chrono::Utc::now(),
            message: reason.clone(),
        });
    } else if phase == Phase::Converged {
        status.last_error = None;
    }
    if phase.needs_attention() {
        if status.notified_failure.as_deref() != Some(reason.as_str()) {
            notifier.send(notifications::Message::failure(
                &name,
                &reason,
                failed_plan.as_ref(),
                revision.clone(),
            ));
            status.notified_failure = Some(reason.clone());
        }
    } else {
        status.notified_failure = None;
    }
    if phase == Phase::Converged {
        status.converged_on = Some(revision);
    }
    status.phase = phase;
    status.reason = reason;
    if let Some(hook) = &settings.on_reconciled {
        hook(&name, status);
    }
    exit
}

/// The error policy: transient errors retry soon with exponential backoff; permanent ones
/// wait much longer (a manifest change triggers a new pass anyway).
pub fn backoff(err: &ApplyError, failures: u32) -> Duration {
    let base = if err.is_transient() {
        TRANSIENT_BASE
    } else {
        Duration::from_secs(300)
    };
    retry_schedule(base, failures)
}

/// The first retry after a transient fault; each further one doubles, up to ten minutes.
const TRANSIENT_BASE: Duration = Duration::from_secs(5);

/// The wait before the `failures`-th consecutive retry: from `base`, doubling, capped.
fn retry_schedule(base: Duration, failures: u32) -> Duration {
    use backon::BackoffBuilder;
    let max = Duration::from_secs(600);
    // backon's exponential schedule, without jitter so the schedule is predictable in
    // `/status`; the n-th delay is the one for the n-th consecutive failure.
    backon::ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(failures.saturating_sub(1) as usize)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_back_off_exponentially_up_to_ten_minutes() {
        let err = ApplyError::Postgres(crate::postgres::PgError::Unreachable {
            client: "c".into(),
            reason: "down".into(),
        });
        assert_eq!(backoff(&err, 1), Duration::from_secs(5));
        assert_eq!(backoff(&err, 2), Duration::from_secs(10));
        assert_eq!(backoff(&err, 20), Duration::from_secs(600));
        let permanent = ApplyError::Config {
            client: "c".into(),
            message: "bad".into(),
        };
        assert_eq!(backoff(&permanent, 1), Duration::from_secs(300));
    }
}
