//! The read-only dashboard the daemon serves: a fleet page and a page per client, plain
//! HTML + a little vanilla JavaScript (no build step) that polls two JSON endpoints and
//! renders with `textContent`, so names and errors can never become markup.
//!
//! - `GET /` and `GET /clients/{name}`: the pages (static; they carry no data)
//! - `GET /api/fleet`: counts by phase and wave, rollout per wave, every client
//! - `GET /api/clients/{name}`: desired beside live, env marks, policy, window, the plan it
//!   would run now, the last error and next retry, the running step, and its history

mod history;
pub mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::RwLock;

use super::{ClientStatus, Shared};
use crate::manifest::{Client, CodeVersion};
use crate::status::{self, Phase};
pub use history::HistoryCache;
pub use view::ClientView;

const FLEET_PAGE: &str = include_str!("assets/fleet.html");
const CLIENT_PAGE: &str = include_str!("assets/client.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// What the running daemon knows between passes and the status server shows: each
/// client's last view and the step it is running. Plain mutexes, held for a copy only,
/// so the executor's callbacks never wait on (or skip because of) a reader.
#[derive(Debug, Default)]
pub struct Live {
    views: Mutex<BTreeMap<String, Arc<ClientView>>>,
    stages: Mutex<BTreeMap<String, String>>,
    rollouts: Mutex<BTreeMap<String, crate::apply::RolloutProgress>>,
    pub history: HistoryCache,
}

impl Live {
    pub fn set_view(&self, client: &str, view: ClientView) {
        lock(&self.views).insert(client.to_owned(), Arc::new(view));
    }

    pub fn view(&self, client: &str) -> Option<Arc<ClientView>> {
        lock(&self.views).get(client).cloned()
    }

    /// The step `client` is running now (`None`: between steps or idle).
    pub fn set_stage(&self, client: &str, stage: Option<String>) {
        let mut stages = lock(&self.stages);
        match stage {
            Some(stage) => stages.insert(client.to_owned(), stage),
            None => stages.remove(client),
        };
    }

    pub fn stage(&self, client: &str) -> Option<String> {
        lock(&self.stages).get(client).cloned()
    }

    pub fn set_rollout(&self, client: &str, rollout: Option<crate::apply::RolloutProgress>) {
        let mut rollouts = lock(&self.rollouts);
        match rollout {
            Some(rollout) => rollouts.insert(client.to_owned(), rollout),
            None => rollouts.remove(client),
        };
    }

    /// The rollouts running now, by client.
    pub fn rollouts(&self) -> BTreeMap<String, crate::apply::RolloutProgress> {
        lock(&self.rollouts).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The dashboard's routes, merged into the status server's router.
pub fn routes() -> Router<Arc<RwLock<Shared>>> {
    Router::new()
        .route("/", get(|| async { Html(FLEET_PAGE) }))
        .route("/clients/{name}", get(|| async { Html(CLIENT_PAGE) }))
        .route(
            "/assets/dashboard.js",
            get(|| async { asset(SCRIPT, "text/javascript") }),
        )
        .route(
            "/assets/dashboard.css",
            get(|| async { asset(STYLE, "text/css") }),
        )
        .route("/api/fleet", get(fleet))
        .route("/api/clients/{name}", get(client))
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, format!("{kind}; charset=utf-8")),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// A client's standing, or "not looked at yet" before the daemon's first pass reaches it.
fn standing(status: Option<&ClientStatus>) -> (Phase, String) {
    match status {
        Some(s) => (s.phase, s.reason.clone()),
        None => (Phase::Pending, "not looked at yet".to_owned()),
    }
}

fn desired_code(client: &Client) -> (Option<String>, Option<String>) {
    match &client.config.code.version {
        CodeVersion::Sha(sha) => (Some(sha.clone()), None),
        CodeVersion::Tag(tag) => (None, Some(tag.clone())),
    }
}

async fn fleet(State(shared): State<Arc<RwLock<Shared>>>) -> Response {
    let shared = shared.read().await;
    let Some(fleet) = shared.fleet.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"loading": true})),
        )
            .into_response();
    };
    let now = Utc::now();
    let mut rows: Vec<(Phase, String, Value)> = Vec::new();
    for (name, client) in fleet.clients.iter().filter(|(n, _)| shared.owns(n)) {
        let status = shared.clients.get(name);
        let (phase, reason) = standing(status);
        let view = shared.live.view(name);
        let (sha, tag) = desired_code(client);
        let row = json!({
            "name": name,
            "wave": client.config.wave,
            "phase": phase,
            "attention": phase.needs_attention(),
            "reason": reason,
            "stage": shared.live.stage(name),
            "code": {
                "desired": view.as_ref().and_then(|v| v.code.desired.clone()).or(sha),
                "tag": tag,
                "live": view.as_ref().and_then(|v| v.code.live.clone()),
            },
            "schema": {
                "desired": client.config.database.schema_version.to_string(),
                "live": view.as_ref().and_then(|v| v.schema.live.clone()),
            },
            "lastChange": status.and_then(|s| s.last_change.clone()),
            "window": view::window(client, now),
        });
        rows.push((phase, name.clone(), row));
    }
    // Clients needing a person first, then by name.
    rows.sort_by(|a, b| (a.0.urgency(), &a.1).cmp(&(b.0.urgency(), &b.1)));
    let phases: Vec<Phase> = rows.iter().map(|r| r.0).collect();
    let waves = view::waves(
        &fleet.manifest.spec.waves,
        fleet
            .clients
            .iter()
            .filter(|(n, _)| shared.owns(n))
            .map(|(name, c)| {
                (
                    c.config.wave.as_deref(),
                    standing(shared.clients.get(name)).0,
                )
            }),
    );
    axum::Json(json!({
        "revision": shared.revision,
        "generatedAt": now,
        "counts": status::counts(&phases).into_iter().collect::<BTreeMap<_, _>>(),
        "waves": waves,
        "clients": rows.into_iter().map(|r| r.2).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn client(State(shared): State<Arc<RwLock<Shared>>>, Path(name): Path<String>) -> Response {
    let (client, status, live) = {
        let shared = shared.read().await;
        let client = shared
            .fleet
            .as_ref()
            .and_then(|f| f.clients.get(&name))
            .filter(|_| shared.owns(&name))
            .cloned();
        (
            client,
            shared.clients.get(&name).cloned(),
            shared.live.clone(),
        )
    };
    let Some(client) = client else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": format!("no client `{name}` in this daemon's fleet")})),
        )
            .into_response();
    };
    let now = Utc::now();
    let (phase, reason) = standing(status.as_ref());
    let (history, history_error) = match live.history.get(&client).await {
        Ok(events) => (events, None),
        Err(err) => (Vec::new(), Some(err)),
    };
    let (sha, tag) = desired_code(&client);
    axum::Json(json!({
        "name": name,
        "wave": client.config.wave,
        "project": client.config.code.project,
        "phase": phase,
        "attention": phase.needs_attention(),
        "reason": reason,
        "stage": live.stage(&name),
        "lastChange": status.as_ref().and_then(|s| s.last_change.clone()),
        "lastError": status.as_ref().and_then(|s| s.last_error.clone()),
        "nextRetry": status.as_ref().and_then(|s| s.next_retry),
        "desired": {"sha": sha, "tag": tag, "schema": client.config.database.schema_version.to_string()},
        "view": live.view(&name),
        "policy": view::policy(&client),
        "window": view::window(&client, now),
        "history": history,
        "historyError": history_error,
        "generatedAt": now,
    }))
    .into_response()
}
