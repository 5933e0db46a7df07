//! Rolling releases: a project's stage configuration, and the release that moves its
//! traffic to a canary deployment stage by stage (start, approve the next stage,
//! complete, or abort by an instant rollback to the current deployment). Shapes follow
//! the SDK's `getRollingRelease*` models (reference section E).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query as QueryParams, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Shared;
use super::routes::{error, json_body, not_found, ok, team};
use super::state::{Deployment, State, now_ms};

type Query = std::collections::HashMap<String, String>;
type Ctx = AxumState<Arc<Shared>>;
/// An answer refusing a call, boxed: it travels through `?` far more often than it is made.
type Refusal = Box<Response>;

/// One configured stage: the canary's percent, and for automatic advancement how many
/// minutes it lasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub target_percentage: u8,
    #[serde(default)]
    pub duration: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub manual_approval: bool,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReleaseState {
    Active,
    Complete,
    Aborted,
}

impl ReleaseState {
    fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Active => "ACTIVE",
            ReleaseState::Complete => "COMPLETE",
            ReleaseState::Aborted => "ABORTED",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub state: ReleaseState,
    pub canary: String,
    pub current: Option<String>,
    pub active: usize,
    pub manual_approval: bool,
    pub stages: Vec<Stage>,
    pub started_at: u64,
    pub updated_at: u64,
    /// When the active stage began (automatic advancement counts from it).
    pub stage_started_at: u64,
}

impl Release {
    /// The canary's share while the release runs: the active stage's percent.
    pub fn canary_percent(&self) -> u8 {
        match self.state {
            ReleaseState::Active => self
                .stages
                .get(self.active)
                .map_or(0, |s| s.target_percentage),
            ReleaseState::Complete => 100,
            ReleaseState::Aborted => 0,
        }
    }
}

fn unavailable() -> Response {
    // What Vercel answers on a plan without rolling releases (its billing status names
    // the same reason, `plan_not_supported`).
    error(
        StatusCode::PAYMENT_REQUIRED,
        "plan_not_supported",
        "Rolling Releases are not available on your plan. Upgrade to Pro or Enterprise to use them.",
    )
}

/// The project a rolling-release call names, or the answer refusing it.
fn project_of(state: &State, p: &str, query: &Query) -> Result<String, Refusal> {
    let id = state
        .project_id(p, team(query))
        .ok_or_else(|| Box::new(not_found("project", p)))?;
    if state.projects[&id].rolling_unavailable {
        return Err(Box::new(unavailable()));
    }
    Ok(id)
}

fn config_json(config: &Config) -> Value {
    let last = config.stages.len().saturating_sub(1);
    json!({
        "target": "production",
        "canaryResponseHeader": false,
        "stages": config.stages.iter().enumerate().map(|(i, s)| {
            let mut stage = json!({
                "targetPercentage": s.target_percentage,
                "requireApproval": config.manual_approval && i < last,
            });
            if let Some(duration) = s.duration {
                stage["duration"] = json!(duration);
            }
            stage
        }).collect::<Vec<_>>(),
    })
}

fn stage_json(release: &Release, index: usize) -> Value {
    let Some(stage) = release.stages.get(index) else {
        return Value::Null;
    };
    let last = release.stages.len() - 1;
    json!({
        "index": index,
        "targetPercentage": stage.target_percentage,
        "duration": stage.duration,
        "isFinalStage": index == last,
        "requireApproval": release.manual_approval && index < last,
    })
}

fn deployment_summary(state: &State, d: Option<&Deployment>) -> Value {
    let Some(d) = d else { return Value::Null };
    json!({
        "id": d.id,
        "name": d.name,
        "url": d.host,
        "createdAt": d.created_at,
        "readyState": state.ready_state(d, now_ms()),
        "readyStateAt": d.created_at + state.build_ms,
        "source": d.source,
        "target": d.target,
    })
}

/// The rolling release document, as every rolling-release operation answers it.
pub fn release_json(state: &State, release: &Release) -> Value {
    let next = match release.state {
        ReleaseState::Active => stage_json(release, release.active + 1),
        _ => Value::Null,
    };
    json!({
        "state": release.state.as_str(),
        "substate": Value::Null,
        "advancementType": if release.manual_approval { "manual-approval" } else { "automatic" },
        "stages": (0..release.stages.len()).map(|i| stage_json(release, i)).collect::<Vec<_>>(),
        "activeStage": stage_json(release, release.active),
        "nextStage": next,
        "canaryDeployment": deployment_summary(state, state.deployments.get(&release.canary)),
        "currentDeployment": deployment_summary(state, release.current.as_ref().and_then(|c| state.deployments.get(c))),
        "currentCanaryPercentage": release.canary_percent(),
        "queuedDeploymentId": Value::Null,
        "startedAt": release.started_at,
        "updatedAt": release.updated_at,
    })
}

fn answer(state: &State, project_id: &str) -> Response {
    let release = state.projects[project_id].rolling_release.as_ref();
    ok(
        StatusCode::OK,
        json!({"rollingRelease": release.map(|r| release_json(state, r))}),
    )
}

pub async fn get_config(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let state = shared.lock();
    match project_of(&state, &p, &query) {
        Ok(id) => ok(
            StatusCode::OK,
            json!({"rollingRelease": state.projects[&id].rolling_config.as_ref().map(config_json)}),
        ),
        Err(refusal) => *refusal,
    }
}

/// Read a configuration body, refusing it in Vercel's words.
fn parse_config(input: &Value) -> Result<Option<Config>, String> {
    if input.is_null() {
        return Err("Invalid request: missing required property `stages`.".to_owned());
    }
    if input["enabled"] == Value::Bool(false) {
        return Ok(None);
    }
    let stages: Vec<Stage> = serde_json::from_value(input["stages"].clone())
        .map_err(|e| format!("Invalid request: `stages` {e}"))?;
    let increasing = stages
        .windows(2)
        .all(|w| w[0].target_percentage < w[1].target_percentage);
    if stages.is_empty()
        || !increasing
        || stages.last().map(|s| s.target_percentage) != Some(100)
        || stages.iter().any(|s| s.target_percentage == 0)
    {
        return Err(
            "Invalid request: `stages` must rise strictly from above 0 to a last stage of 100."
                .to_owned(),
        );
    }
    let manual_approval = match input["advancementType"].as_str() {
        None | Some("manual-approval") => true,
        Some("automatic") => false,
        Some(other) => {
            return Err(format!(
                "Invalid request: `advancementType` should be one of automatic, manual-approval; got {other}"
            ));
        }
    };
    Ok(Some(Config {
        manual_approval,
        stages,
    }))
}

pub async fn set_config(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    let id = match project_of(&state, &p, &query) {
        Ok(id) => id,
        Err(refusal) => return *refusal,
    };
    match parse_config(&json_body(&body)) {
        Ok(config) => {
            let json = config.as_ref().map(config_json);
            let project = state.projects.get_mut(&id).expect("found above");
            project.rolling_config = config;
            project.updated_at = now_ms();
            ok(StatusCode::OK, json!({"rollingRelease": json}))
        }
        Err(message) => error(StatusCode::BAD_REQUEST, "bad_request", message),
    }
}

pub async fn delete_config(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let mut state = shared.lock();
    match project_of(&state, &p, &query) {
        Ok(id) => {
            state
                .projects
                .get_mut(&id)
                .expect("found above")
                .rolling_config = None;
            ok(StatusCode::OK, json!({}))
        }
        Err(refusal) => *refusal,
    }
}

/// The active release, or with `?state=` the latest one in that state.
pub async fn get_release(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let state = shared.lock();
    let id = match project_of(&state, &p, &query) {
        Ok(id) => id,
        Err(refusal) => return *refusal,
    };
    let wanted = query.get("state").map_or("ACTIVE", String::as_str);
    let release = state.projects[&id]
        .rolling_release
        .as_ref()
        .filter(|r| r.state.as_str() == wanted);
    ok(
        StatusCode::OK,
        json!({"rollingRelease": release.map(|r| release_json(&state, r))}),
    )
}

fn canary_of(input: &Value) -> Result<String, Refusal> {
    input["canaryDeploymentId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Invalid request: missing required property `canaryDeploymentId`.",
            ))
        })
}

pub async fn start(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    match start_release(&mut state, &p, &query, &json_body(&body)) {
        Ok(id) => answer(&state, &id),
        Err(refusal) => *refusal,
    }
}

fn start_release(
    state: &mut State,
    p: &str,
    query: &Query,
    input: &Value,
) -> Result<String, Refusal> {
    let id = project_of(state, p, query)?;
    let canary = canary_of(input)?;
    let project = &state.projects[&id];
    let Some(config) = project.rolling_config.clone() else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "rolling_release_not_configured",
            "Rolling releases are not configured for this project",
        )));
    };
    if project
        .rolling_release
        .as_ref()
        .is_some_and(|r| r.state == ReleaseState::Active)
    {
        return Err(Box::new(error(
            StatusCode::CONFLICT,
            "rolling_release_in_progress",
            "A rolling release is already in progress for this project",
        )));
    }
    let Some(deployment) = state
        .deployments
        .get(&canary)
        .filter(|d| d.project_id == id)
    else {
        return Err(Box::new(not_found("deployment", &canary)));
    };
    if state.ready_state(deployment, now_ms()) != "READY" {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "deployment_not_ready",
            format!("Deployment {canary} is not READY"),
        )));
    }
    let Some(current) = project.production.clone() else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "no_current_deployment",
            "A rolling release needs a current production deployment to shift traffic from",
        )));
    };
    if current == canary {
        return Err(Box::new(error(
            StatusCode::CONFLICT,
            "already_current",
            format!("Deployment {canary} is already the current production deployment"),
        )));
    }
    let now = now_ms();
    let release = Release {
        state: ReleaseState::Active,
        canary,
        current: Some(current),
        active: 0,
        manual_approval: config.manual_approval,
        stages: config.stages,
        started_at: now,
        updated_at: now,
        stage_started_at: now,
    };
    let single = release.stages.len() == 1;
    state
        .projects
        .get_mut(&id)
        .expect("found above")
        .rolling_release = Some(release);
    if single {
        finish(state, &id);
    } else {
        state.record_shares(&id, now);
    }
    Ok(id)
}

/// The active release of a project, checked against the canary a call names.
fn active_release<'a>(state: &'a State, id: &str, canary: &str) -> Result<&'a Release, Refusal> {
    let release = state.projects[id]
        .rolling_release
        .as_ref()
        .filter(|r| r.state == ReleaseState::Active)
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "no_active_rolling_release",
                "There is no active rolling release for this project",
            ))
        })?;
    if release.canary != canary {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "canary_mismatch",
            format!("Deployment {canary} is not the canary of the active rolling release"),
        )));
    }
    Ok(release)
}

/// The project an approve or complete call names and its active release's canary, or
/// the answer refusing the call.
fn release_call(state: &State, p: &str, query: &Query, input: &Value) -> Result<String, Refusal> {
    let id = project_of(state, p, query)?;
    let canary = canary_of(input)?;
    active_release(state, &id, &canary)?;
    Ok(id)
}

pub async fn approve_stage(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    let input = json_body(&body);
    let id = match release_call(&state, &p, &query, &input) {
        Ok(id) => id,
        Err(refusal) => return *refusal,
    };
    let active = state.projects[&id]
        .rolling_release
        .as_ref()
        .map_or(0, |r| r.active);
    let stages = state.projects[&id]
        .rolling_release
        .as_ref()
        .map_or(0, |r| r.stages.len());
    let next = input["nextStageIndex"].as_u64().map(|n| n as usize);
    if next != Some(active + 1) || active + 1 >= stages {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_stage",
            format!(
                "nextStageIndex must be {} (the stage after the active one)",
                active + 1
            ),
        );
    }
    advance(&mut state, &id);
    answer(&state, &id)
}

pub async fn complete(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    match release_call(&state, &p, &query, &json_body(&body)) {
        Ok(id) => {
            finish(&mut state, &id);
            answer(&state, &id)
        }
        Err(refusal) => *refusal,
    }
}

/// The project's rolling release, to change it.
fn release_mut<'s>(state: &'s mut State, id: &str) -> Option<&'s mut Release> {
    state.projects.get_mut(id)?.rolling_release.as_mut()
}

/// Move an active release to its next stage; the last stage completes it.
fn advance(state: &mut State, id: &str) {
    let now = now_ms();
    let Some(release) = release_mut(state, id) else {
        return;
    };
    release.active += 1;
    release.updated_at = now;
    release.stage_started_at = now;
    if release.active + 1 >= release.stages.len() {
        finish(state, id);
    } else {
        state.record_shares(id, now);
    }
}

/// Complete a release: the canary takes all traffic and becomes production.
fn finish(state: &mut State, id: &str) {
    let now = now_ms();
    let Some(release) = release_mut(state, id) else {
        return;
    };
    release.state = ReleaseState::Complete;
    release.active = release.stages.len() - 1;
    release.updated_at = now;
    let canary = release.canary.clone();
    state.make_production(id, &canary, "promote");
}

/// Advance releases whose stages advance by time.
pub fn settle(state: &mut State, now: u64) {
    let due: Vec<String> = state
        .projects
        .values()
        .filter_map(|p| {
            let r = p.rolling_release.as_ref()?;
            let stage = r.stages.get(r.active)?;
            let due = r.state == ReleaseState::Active
                && !r.manual_approval
                && stage
                    .duration
                    .is_some_and(|m| now >= r.stage_started_at + m * 60_000);
            due.then(|| p.id.clone())
        })
        .collect();
    for id in due {
        advance(state, &id);
    }
}

/// An instant rollback to the current deployment of an active release aborts it: all
/// traffic goes back at once. `None` when the rollback is an ordinary one.
pub fn abort_by_rollback(
    state: &mut State,
    p: &str,
    d: &str,
    team: Option<&str>,
) -> Option<Response> {
    let id = state.project_id(p, team)?;
    let release = release_mut(state, &id)?;
    if release.state != ReleaseState::Active || release.current.as_deref() != Some(d) {
        return None;
    }
    let now = now_ms();
    release.state = ReleaseState::Aborted;
    release.updated_at = now;
    state.record_shares(&id, now);
    Some(StatusCode::CREATED.into_response())
}

/// Vercel refuses a plain promotion while a rolling release moves the project's traffic.
pub fn refuse_promote_while_active(state: &State, project_id: &str) -> Option<Response> {
    state.projects[project_id]
        .rolling_release
        .as_ref()
        .filter(|r| r.state == ReleaseState::Active)
        .map(|_| {
            error(
                StatusCode::CONFLICT,
                "rolling_release_in_progress",
                "A rolling release is in progress; approve, complete or abort it first",
            )
        })
}

/// `POST /_emulator/projects/{p}/rolling-releases {"available": bool}`.
pub async fn admin_availability(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    body: Bytes,
) -> Response {
    let Some(available) = json_body(&body)["available"].as_bool() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "available (a boolean) is required",
        );
    };
    {
        let mut state = shared.lock();
        let Some(id) = state.project_id_any_scope(&p) else {
            return not_found("project", &p);
        };
        state
            .projects
            .get_mut(&id)
            .expect("found above")
            .rolling_unavailable = !available;
    }
    shared.persist();
    ok(StatusCode::OK, json!({"available": available}))
}
