//! Vercel: observe a client's project (in one request when nothing is moving), converge
//! its env and code, and roll production back. The client speaks the real REST API; tests
//! and the demo point it at steward's emulator.

mod api;
mod client;
mod error;
pub mod health;
pub mod limiter;
pub mod rolling;

use std::time::{Duration, Instant};

pub use api::{Deployment, EnvVar, Project};
pub use client::{Budget, ResponseCounter, VercelClient, set_default_budget};
pub use error::VercelError;

use crate::plan::{
    CodeObserved, Deployment as PlannedDeployment, EnvAction, EnvChange, ObservedEnv,
};
use crate::secret::Secret;

/// The marker steward writes in a variable's `comment`: `steward:fp=<fingerprint>`.
const FINGERPRINT_PREFIX: &str = "steward:fp=";

/// What the planner needs from a project, from one `GET /v9/projects/{id}`.
#[derive(Debug, Clone)]
pub struct Observation {
    pub project: Project,
    pub code: CodeObserved,
    pub env: Vec<ObservedEnv>,
}

/// Observe a project: production deployment and env in one request.
pub async fn observe(client: &VercelClient, project: &str) -> Result<Observation, VercelError> {
    let project = client.project(project).await?;
    let code = CodeObserved {
        production: project.production().map(|d| PlannedDeployment {
            id: d.id.clone(),
            sha: d.sha().map(str::to_owned),
            url: d.url.clone(),
            origin: Some(d.origin()),
        }),
        paused: project.paused.unwrap_or(false),
        rolling_releases: Default::default(),
        // Absent means Vercel's default, which is on.
        auto_promote: project.auto_assign_custom_domains.unwrap_or(true),
        // Known from steward's own records, not from Vercel.
        promoted_by_steward: Vec::new(),
    };
    let env = project
        .env
        .iter()
        .filter(|e| e.targets_production())
        .map(|e| {
            let (fingerprint, written_at) = parse_comment(e.comment.as_deref());
            ObservedEnv {
                key: e.key.clone(),
                fingerprint,
                sensitive: e.kind == "sensitive",
                // steward records when it wrote the value; a later update is someone else's.
                drifted: matches!((written_at, e.updated_at), (Some(w), Some(u)) if u > w + 1000),
            }
        })
        .collect();
    Ok(Observation { project, code, env })
}

/// The secret reference a variable's value came from, as steward recorded it in the
/// comment (`src=NAME`): the name of a variable in steward's environment, never a value.
pub fn comment_source(comment: Option<&str>) -> Option<(String, String)> {
    let rest = comment?.strip_prefix(FINGERPRINT_PREFIX)?;
    let mut parts = rest.split(';');
    let fingerprint = parts.next()?.to_owned();
    let source = parts.find_map(|p| p.strip_prefix("src="))?.to_owned();
    Some((fingerprint, source))
}

fn parse_comment(comment: Option<&str>) -> (Option<String>, Option<u64>) {
    let Some(rest) = comment.and_then(|c| c.strip_prefix(FINGERPRINT_PREFIX)) else {
        return (None, None);
    };
    let mut parts = rest.split(';');
    let fingerprint = parts.next().map(str::to_owned);
    let at = parts
        .find_map(|p| p.strip_prefix("at="))
        .and_then(|t| t.parse().ok());
    (fingerprint, at)
}

fn comment(fingerprint: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{FINGERPRINT_PREFIX}{fingerprint};at={now}")
}

/// What to put back if a later step fails.
#[derive(Debug, Clone, Default)]
pub struct EnvUndo {
    /// Variables to restore: key, the value as the previous manifest revision had it
    /// (sensitive values cannot be read back from Vercel), type and fingerprint.
    restore: Vec<(String, Secret, String, String)>,
    /// Variables steward added, to delete again.
    added: Vec<String>,
    /// Variables changed or removed whose previous value is not known (sensitive, and its
    /// secret reference no longer holds it): an undo cannot put them back, and says so.
    lost: Vec<String>,
}

impl EnvUndo {
    /// The variables an undo cannot put back.
    pub fn lost(&self) -> &[String] {
        &self.lost
    }
}

/// The values an env change writes: key → (value, sensitive, fingerprint). The
/// fingerprint may carry `;src=NAME`, the secret reference the value came from, which is
/// kept in the variable's comment.
pub type EnvValues<'a> = &'a [(String, Secret, bool, String)];

/// Write every change, or none: if one write fails, the ones already made are undone and
/// the error returned, so a half-synced env never reaches a build.
pub async fn apply_env(
    client: &VercelClient,
    project_id: &str,
    changes: &[EnvChange],
    values: EnvValues<'_>,
    previous: EnvValues<'_>,
) -> Result<EnvUndo, VercelError> {
    let mut undo = EnvUndo::default();
    for change in changes {
        let result = apply_one(client, project_id, change, values, previous, &mut undo).await;
        if let Err(err) = result {
            if let Err(undo_err) = undo_env(client, project_id, &undo).await {
                tracing::error!(error = %undo_err, "undoing a partial env change failed");
            }
            return Err(err);
        }
    }
    Ok(undo)
}

async fn apply_one(
    client: &VercelClient,
    project_id: &str,
    change: &EnvChange,
    values: EnvValues<'_>,
    previous: EnvValues<'_>,
    undo: &mut EnvUndo,
) -> Result<(), VercelError> {
    let old = previous.iter().find(|(k, ..)| *k == change.key);
    match change.action {
        EnvAction::Add | EnvAction::Change => {
            let Some((_, value, sensitive, fp)) = values.iter().find(|(k, ..)| *k == change.key)
            else {
                return Ok(());
            };
            let kind = if *sensitive { "sensitive" } else { "encrypted" };
            client
                .upsert_env(project_id, &change.key, value, kind, &comment(fp))
                .await?;
            match (change.action, old) {
                (EnvAction::Add, _) => undo.added.push(change.key.clone()),
                (_, Some((_, v, s, f))) => undo.restore.push((
                    change.key.clone(),
                    v.clone(),
                    kind_of(*s).to_owned(),
                    f.clone(),
                )),
                (_, None) => undo.lost.push(change.key.clone()),
            }
        }
        EnvAction::Remove => {
            let current = client.list_env(project_id).await?;
            if let Some(var) = current
                .iter()
                .find(|e| e.key == change.key && e.targets_production())
            {
                client.delete_env(project_id, &var.id).await?;
            }
            match old {
                Some((_, v, s, f)) => undo.restore.push((
                    change.key.clone(),
                    v.clone(),
                    kind_of(*s).to_owned(),
                    f.clone(),
                )),
                None => undo.lost.push(change.key.clone()),
            }
        }
    }
    Ok(())
}

fn kind_of(sensitive: bool) -> &'static str {
    if sensitive { "sensitive" } else { "encrypted" }
}

/// Put the env back as it was before `apply_env`.
pub async fn undo_env(
    client: &VercelClient,
    project_id: &str,
    undo: &EnvUndo,
) -> Result<(), VercelError> {
    for (key, value, kind, fp) in &undo.restore {
        client
            .upsert_env(project_id, key, value, kind, &comment(fp))
            .await?;
    }
    if !undo.added.is_empty() {
        let current = client.list_env(project_id).await?;
        for key in &undo.added {
            if let Some(var) = current
                .iter()
                .find(|e| &e.key == key && e.targets_production())
            {
                client.delete_env(project_id, &var.id).await?;
            }
        }
    }
    Ok(())
}

/// A READY, never-served production build of `sha` made after `env_changed_at`, or a new one.
pub async fn deploy(
    client: &VercelClient,
    project: &Project,
    sha: &str,
    env_changed: bool,
) -> Result<Deployment, VercelError> {
    // Same commit, new env: redeploy what production runs, as the guide's "redeploy".
    if env_changed && let Some(production) = project.production().filter(|p| p.sha() == Some(sha)) {
        return client.redeploy(project, &production.id).await;
    }
    if !env_changed {
        let existing = client.deployments_for_sha(&project.id, sha).await?;
        // A build that served production before cannot be promoted again (only rolled
        // back to): putting its commit back after an outside change takes a new one.
        if let Some(found) = existing
            .into_iter()
            .filter(|d| d.ready_substate.as_deref() != Some("PROMOTED"))
            .find(|d| d.state() == "READY" || d.state() == "BUILDING" || d.state() == "QUEUED")
        {
            return Ok(found);
        }
    }
    client.create_deployment(project, sha).await
}

/// Poll until READY; ERROR or CANCELED fail with Vercel's code and message.
pub async fn wait_ready(
    client: &VercelClient,
    id: &str,
    timeout: Duration,
) -> Result<Deployment, VercelError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let d = client.deployment(id).await?;
        match d.state() {
            "READY" => return Ok(d),
            "ERROR" | "CANCELED" => {
                return Err(VercelError::BuildFailed {
                    deployment: d.id.clone(),
                    code: d.error_code.clone().unwrap_or_else(|| d.state().to_owned()),
                    message: d.error_message.clone().unwrap_or_default(),
                });
            }
            state if started.elapsed() >= timeout => {
                return Err(VercelError::Timeout {
                    deployment: d.id.clone(),
                    state: state.to_owned(),
                    waited: timeout,
                });
            }
            _ => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Promote, then confirm `targets.production` points at it. Vercel's promote turns the
/// project's auto-assignment of production domains back on; steward promotes only
/// projects it took promotion over, so it turns that off again at once, or the next push
/// to the production branch would go live by itself.
pub async fn promote(
    client: &VercelClient,
    project_id: &str,
    deployment_id: &str,
) -> Result<(), VercelError> {
    client.promote(project_id, deployment_id).await?;
    confirm_promoted(client, project_id, deployment_id).await
}

/// Confirm production is `deployment_id` after steward put it there (a promote, a
/// completed rolling release), and keep the project's auto-assignment of production
/// domains off, which Vercel turns back on when it promotes.
pub(crate) async fn confirm_promoted(
    client: &VercelClient,
    project_id: &str,
    deployment_id: &str,
) -> Result<(), VercelError> {
    let project = confirm_production(client, project_id, deployment_id).await?;
    if project.auto_assign_custom_domains != Some(false) {
        set_auto_promote(client, project_id, false).await?;
    }
    Ok(())
}

/// Turn the project's auto-assignment of production domains on or off
/// (`autoAssignCustomDomains`), and confirm the project's answer says so.
pub async fn set_auto_promote(
    client: &VercelClient,
    project_id: &str,
    on: bool,
) -> Result<(), VercelError> {
    let project = client.set_auto_assign(project_id, on).await?;
    if project.auto_assign_custom_domains == Some(on) {
        return Ok(());
    }
    Err(VercelError::Shape {
        path: format!("/v9/projects/{project_id}"),
        reason: format!(
            "the project says autoAssignCustomDomains: {:?} after setting it to {on}",
            project.auto_assign_custom_domains
        ),
    })
}

/// Roll production back to an earlier deployment (instant rollback), and confirm.
pub async fn rollback(
    client: &VercelClient,
    project_id: &str,
    deployment_id: &str,
) -> Result<(), VercelError> {
    client.rollback(project_id, deployment_id).await?;
    confirm_production(client, project_id, deployment_id)
        .await
        .map(drop)
}

/// Pause or unpause a project (the emergency stop), then confirm the project says so.
/// A project that does not report `paused` at all is taken at the call's word.
pub async fn set_paused(
    client: &VercelClient,
    project_id: &str,
    paused: bool,
) -> Result<(), VercelError> {
    client.set_paused(project_id, paused).await?;
    let project = client.project(project_id).await?;
    if project.paused.unwrap_or(paused) == paused {
        return Ok(());
    }
    Err(VercelError::Shape {
        path: format!("/v9/projects/{project_id}"),
        reason: format!(
            "the project still says paused: {} after {}",
            !paused,
            if paused { "pause" } else { "unpause" }
        ),
    })
}

/// Poll the project until production is `deployment_id`; the project as then read.
pub(crate) async fn confirm_production(
    client: &VercelClient,
    project_id: &str,
    deployment_id: &str,
) -> Result<Project, VercelError> {
    for _ in 0..50 {
        let project = client.project(project_id).await?;
        if project.production().is_some_and(|d| d.id == deployment_id) {
            return Ok(project);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(VercelError::Shape {
        path: format!("/v9/projects/{project_id}"),
        reason: format!("targets.production never pointed at {deployment_id}"),
    })
}
