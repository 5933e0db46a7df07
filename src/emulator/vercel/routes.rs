//! Request handling: one axum route per operation, each under every version Vercel still
//! serves (`/v9` and `/v10`, ...). A middleware in front of the API routes does what is
//! common to all of them, in Vercel's order: auth, injected faults, team scope, the
//! per-endpoint rate limit, then the request counters. Requests to a deployment's own
//! host (`*.vercel.app`) are answered as the app would, before any routing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query as QueryParams, Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde_json::{Value, json};

use super::Shared;
use super::limits::{self, LimitsChange};
use super::promotion;
use super::state::{Deployment, EnvVar, State, now_ms};
use super::{rolling, traffic};

type Query = HashMap<String, String>;
type Ctx = AxumState<Arc<Shared>>;

/// Register one operation under each API version that serves it.
fn versions(
    router: Router<Arc<Shared>>,
    versions: &[&str],
    path: &str,
    handler: MethodRouter<Arc<Shared>>,
) -> Router<Arc<Shared>> {
    versions.iter().fold(router, |router, version| {
        router.route(&format!("/{version}{path}"), handler.clone())
    })
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new();
    let api = versions(api, &["v6", "v7"], "/deployments", get(list_deployments));
    let api = versions(api, &["v13"], "/deployments", post(create_deployment));
    let api = versions(api, &["v13"], "/deployments/{id}", get(get_deployment));
    let api = versions(
        api,
        &["v9"],
        "/projects/{p}",
        get(get_project).patch(update_project),
    );
    let api = versions(
        api,
        &["v9", "v10"],
        "/projects/{p}/promote/{d}",
        post(promote),
    );
    let api = versions(
        api,
        &["v1", "v9"],
        "/projects/{p}/rollback/{d}",
        post(rollback),
    );
    let api = versions(api, &["v1"], "/projects/{p}/pause", post(pause));
    let api = versions(api, &["v1"], "/projects/{p}/unpause", post(unpause));
    let api = versions(
        api,
        &["v8", "v9", "v10"],
        "/projects/{p}/env",
        get(list_env),
    );
    let api = versions(api, &["v10"], "/projects/{p}/env", post(create_env));
    let api = versions(api, &["v1", "v10"], "/projects/{p}/env/{id}", get(get_env));
    let api = versions(
        api,
        &["v9", "v10"],
        "/projects/{p}/env/{id}",
        patch(edit_env),
    );
    let api = versions(
        api,
        &["v8", "v9", "v10"],
        "/projects/{p}/env/{id}",
        delete(delete_env),
    );
    let api = versions(
        api,
        &["v1"],
        "/projects/{p}/rolling-release/config",
        get(rolling::get_config)
            .patch(rolling::set_config)
            .delete(rolling::delete_config),
    );
    let api = versions(
        api,
        &["v1"],
        "/projects/{p}/rolling-release",
        get(rolling::get_release),
    );
    let api = versions(
        api,
        &["v1"],
        "/projects/{p}/rolling-release/start",
        post(rolling::start),
    );
    let api = versions(
        api,
        &["v1"],
        "/projects/{p}/rolling-release/approve-stage",
        post(rolling::approve_stage),
    );
    let api = versions(
        api,
        &["v1"],
        "/projects/{p}/rolling-release/complete",
        post(rolling::complete),
    );
    let api = versions(
        api,
        &["v1"],
        "/projects/{p}/deployments/{d}/runtime-logs",
        get(traffic::runtime_logs),
    );
    let api = api
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
        .layer(from_fn_with_state(shared.clone(), api_guard));

    let admin = Router::new()
        .route("/_emulator/teams", post(admin_team))
        .route("/_emulator/projects", post(admin_project))
        .route("/_emulator/push", post(admin_push))
        .route(
            "/_emulator/projects/{p}/rolling-releases",
            post(rolling::admin_availability),
        )
        .route(
            "/_emulator/faults",
            get(admin_faults).post(admin_set_faults),
        )
        .route(
            "/_emulator/limits",
            get(admin_limits).post(admin_set_limits),
        )
        .route(
            "/_emulator/stats",
            get(admin_stats).delete(admin_reset_stats),
        )
        .route("/_emulator/{*rest}", axum::routing::any(admin_unknown));

    admin
        .merge(api)
        .layer(from_fn_with_state(shared.clone(), by_host))
        .with_state(shared)
}

pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

pub(super) fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(super) fn not_found(what: &str, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("Could not find the {what}: {id}"),
    )
}

/// The team a request is scoped to (`?teamId=`), `None` for the token's own account.
pub(super) fn team(query: &Query) -> Option<&str> {
    query.get("teamId").map(String::as_str)
}

/// A JSON request body; an empty or malformed one reads as `null`, which each handler
/// refuses in Vercel's words for the fields it needs.
pub(super) fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// Requests addressed to a deployment's own host are the app's, not the API's.
async fn by_host(ctx: Ctx, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let host = host.split(':').next().unwrap_or_default().to_owned();
    if host.ends_with(".vercel.app") {
        return app_request(&ctx.0, &host);
    }
    next.run(request).await
}

/// What every API operation shares: latency, auth, faults, team scope, rate limits,
/// then settling builds before the handler and counting and persisting after it.
async fn api_guard(AxumState(shared): Ctx, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let latency = shared.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let response = match admit(&shared, &request) {
        Err(refusal) => *refusal,
        Ok(verdict) => {
            let mut response = next.run(request).await;
            if let Some(verdict) = verdict {
                verdict.add_headers(response.headers_mut());
            }
            if method != Method::GET {
                shared.persist();
            }
            response
        }
    };
    let mut state = shared.lock();
    state.stats.requests += 1;
    *state
        .stats
        .by_status
        .entry(response.status().as_u16())
        .or_default() += 1;
    *state
        .stats
        .by_route
        .entry(format!("{method} {}", route_name(&path)))
        .or_default() += 1;
    response
}

/// Let a request through (with the rate-limit window it counted against) or refuse it.
fn admit(shared: &Shared, request: &Request) -> Result<Option<limits::Verdict>, Box<Response>> {
    let path = request.uri().path();
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    if bearer != Some(shared.token.as_str()) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not authorized",
        )));
    }
    let mut state = shared.lock();
    if state.faults.rate_limit > 0 {
        state.faults.rate_limit -= 1;
        let retry = state.faults.retry_after_secs;
        let reset = now_ms() / 1000 + retry;
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"error": {"code": "rate_limited", "message": format!("The rate limit of 100 exceeded for '{path}'. Try again in {retry} seconds"),
                "limit": {"remaining": 0, "reset": reset, "resetMs": reset * 1000, "total": 100}}})),
        )
            .into_response();
        let h = response.headers_mut();
        h.insert("retry-after", HeaderValue::from(retry));
        h.insert("x-ratelimit-limit", HeaderValue::from(100u32));
        h.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
        h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        return Err(Box::new(response));
    }
    if state.faults.errors > 0
        && (state.faults.error_path.is_empty() || path.contains(&state.faults.error_path))
    {
        state.faults.errors -= 1;
        return Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "An unexpected internal error occurred",
        )));
    }
    let query: Query = request
        .uri()
        .query()
        .map(form_urlencoded_pairs)
        .unwrap_or_default();
    let team = team(&query);
    if let Some(team) = team
        && !state.teams.contains(team)
    {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "You don't have permission to access this team",
        )));
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Vercel counts per endpoint and per scope: the team, or the token's user.
    let verdict = limits::endpoint(request.method().as_str(), &segments).and_then(|endpoint| {
        state
            .limits
            .count(team.unwrap_or("user"), endpoint, now_ms())
    });
    if let Some(verdict) = &verdict
        && !verdict.allowed()
    {
        return Err(Box::new(verdict.refusal(path)));
    }
    state.settle();
    Ok(verdict)
}

/// A path no operation serves: 404, or 405 for a method Vercel's API never takes.
async fn unknown_route(method: Method, uri: axum::http::Uri) -> Response {
    if matches!(
        method,
        Method::GET | Method::POST | Method::PATCH | Method::DELETE
    ) {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("The requested path {} was not found", uri.path()),
        )
    } else {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_unknown",
            "This endpoint only supports GET, POST, PATCH and DELETE",
        )
    }
}

fn route_name(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with("prj_") || s.starts_with("dpl_") || s.starts_with("env_") {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn form_urlencoded_pairs(query: &str) -> Query {
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request to a deployment's own URL: the app's health, or what a fault says.
fn app_request(shared: &Shared, host: &str) -> Response {
    let mut state = shared.lock();
    state.settle();
    let deployment = state
        .deployments
        .values()
        .find(|d| d.host == host)
        .cloned()
        .or_else(|| {
            let project = state
                .projects
                .values()
                .find(|p| State::production_alias(p) == host)?;
            project
                .production
                .as_ref()
                .and_then(|id| state.deployments.get(id))
                .cloned()
        });
    let Some(d) = deployment else {
        return (
            StatusCode::NOT_FOUND,
            "The deployment could not be found on Vercel.\n\nDEPLOYMENT_NOT_FOUND\n",
        )
            .into_response();
    };
    if state.ready_state(&d, now_ms()) != "READY" {
        return (StatusCode::NOT_FOUND, "DEPLOYMENT_NOT_READY\n").into_response();
    }
    // A paused project serves nothing, on every one of its URLs, as Vercel's pause does.
    if state.projects.get(&d.project_id).is_some_and(|p| p.paused) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "This deployment is temporarily paused\n\nDEPLOYMENT_PAUSED\n",
        )
            .into_response();
    }
    let serving = state
        .projects
        .get(&d.project_id)
        .and_then(|p| p.production.as_deref())
        == Some(d.id.as_str());
    if serving && state.faults.unhealthy_in_production.contains(&d.sha) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy under production traffic\n",
        )
            .into_response();
    }
    match state.faults.unhealthy.get(&d.sha) {
        Some(&code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "unhealthy\n",
        )
            .into_response(),
        None => ok(
            StatusCode::OK,
            json!({"status": "ok", "deployment": d.id, "sha": d.sha}),
        ),
    }
}

async fn admin_team(AxumState(shared): Ctx, body: Bytes) -> Response {
    let input = json_body(&body);
    let id = input["id"].as_str().unwrap_or("team_emulator").to_owned();
    shared.lock().teams.insert(id.clone());
    shared.persist();
    ok(StatusCode::CREATED, json!({"id": id}))
}

async fn admin_project(AxumState(shared): Ctx, body: Bytes) -> Response {
    let input = json_body(&body);
    let Some(name) = input["name"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "name is required");
    };
    let team = input["team"].as_str().map(str::to_owned);
    let id = {
        let mut state = shared.lock();
        if let Some(team) = &team {
            state.teams.insert(team.clone());
        }
        state.create_project(name, team)
    };
    shared.persist();
    ok(StatusCode::CREATED, json!({"id": id, "name": name}))
}

async fn admin_faults(AxumState(shared): Ctx) -> Response {
    ok(
        StatusCode::OK,
        serde_json::to_value(&shared.lock().faults).unwrap_or_default(),
    )
}

async fn admin_set_faults(AxumState(shared): Ctx, body: Bytes) -> Response {
    match serde_json::from_slice(&body) {
        Ok(faults) => {
            shared.lock().faults = faults;
            ok(StatusCode::OK, json!({"ok": true}))
        }
        Err(err) => error(StatusCode::BAD_REQUEST, "bad_request", err.to_string()),
    }
}

async fn admin_limits(AxumState(shared): Ctx) -> Response {
    let state = shared.lock();
    ok(
        StatusCode::OK,
        json!({"limits": state.limits.limits, "stats": state.limits.stats}),
    )
}

async fn admin_set_limits(AxumState(shared): Ctx, body: Bytes) -> Response {
    match serde_json::from_slice::<LimitsChange>(&body) {
        Ok(change) => match shared.lock().limits.change(change) {
            Ok(()) => ok(StatusCode::OK, json!({"ok": true})),
            Err(message) => error(StatusCode::BAD_REQUEST, "bad_request", message),
        },
        Err(err) => error(StatusCode::BAD_REQUEST, "bad_request", err.to_string()),
    }
}

async fn admin_stats(AxumState(shared): Ctx) -> Response {
    ok(
        StatusCode::OK,
        serde_json::to_value(&shared.lock().stats).unwrap_or_default(),
    )
}

async fn admin_reset_stats(AxumState(shared): Ctx) -> Response {
    shared.lock().stats = Default::default();
    ok(StatusCode::OK, json!({"ok": true}))
}

/// `POST /_emulator/push`: see [`promotion::Push`].
async fn admin_push(AxumState(shared): Ctx, body: Bytes) -> Response {
    let push: promotion::Push = match serde_json::from_slice(&body) {
        Ok(push) => push,
        Err(err) => return error(StatusCode::BAD_REQUEST, "bad_request", err.to_string()),
    };
    let built = shared.lock().push(&push);
    shared.persist();
    match built {
        Ok(built) => ok(
            StatusCode::CREATED,
            json!({"deployments": built.iter().map(|(project, id)| json!({"project": project, "id": id})).collect::<Vec<_>>()}),
        ),
        Err(message) => error(StatusCode::BAD_REQUEST, "bad_request", message),
    }
}

async fn update_project(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    let Some(project_id) = state.project_id(&p, team(&query)) else {
        return not_found("project", &p);
    };
    match promotion::update_project(&mut state, &project_id, &json_body(&body)) {
        Ok(()) => ok(
            StatusCode::OK,
            state.project_json(&state.projects[&project_id]),
        ),
        Err(message) => error(StatusCode::BAD_REQUEST, "bad_request", message),
    }
}

async fn admin_unknown(Path(rest): Path<String>) -> Response {
    not_found("admin endpoint", &rest)
}

async fn get_project(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let state = shared.lock();
    match state.project_id(&p, team(&query)) {
        Some(id) => ok(StatusCode::OK, state.project_json(&state.projects[&id])),
        None => not_found("project", &p),
    }
}

async fn promote(
    AxumState(shared): Ctx,
    Path((p, d)): Path<(String, String)>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    alias(&mut shared.lock(), &p, &d, team(&query), "promote")
}

async fn rollback(
    AxumState(shared): Ctx,
    Path((p, d)): Path<(String, String)>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let mut state = shared.lock();
    // Vercel aborts a rolling release by an instant rollback to its current deployment.
    if let Some(response) = rolling::abort_by_rollback(&mut state, &p, &d, team(&query)) {
        return response;
    }
    alias(&mut state, &p, &d, team(&query), "rollback")
}

async fn pause(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    set_paused(&mut shared.lock(), &p, team(&query), true)
}

async fn unpause(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    set_paused(&mut shared.lock(), &p, team(&query), false)
}

async fn list_deployments(
    AxumState(shared): Ctx,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let state = shared.lock();
    let (state, query, team) = (&*state, &query, team(&query));
    let project = match query.get("projectId") {
        Some(p) => match state.project_id(p, team) {
            Some(id) => Some(id),
            None => return not_found("project", p),
        },
        None => None,
    };
    let now = now_ms();
    let states: Option<Vec<&str>> = query.get("state").map(|s| s.split(',').collect());
    let sha = query
        .get("sha")
        .or_else(|| query.get("meta-githubCommitSha"));
    let until: u64 = query
        .get("until")
        .and_then(|u| u.parse().ok())
        .unwrap_or(u64::MAX);
    let since: u64 = query.get("since").and_then(|u| u.parse().ok()).unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let mut matching: Vec<&Deployment> = state
        .deployments
        .values()
        .filter(|d| project.as_ref().is_none_or(|p| &d.project_id == p))
        .filter(|d| {
            state
                .projects
                .get(&d.project_id)
                .is_some_and(|p| p.team.as_deref() == team)
        })
        .filter(|d| {
            query
                .get("target")
                .is_none_or(|t| d.target.as_deref() == Some(t.as_str()))
        })
        .filter(|d| {
            states
                .as_ref()
                .is_none_or(|s| s.contains(&state.ready_state(d, now)))
        })
        .filter(|d| sha.is_none_or(|s| &d.sha == s))
        .filter(|d| d.created_at < until && d.created_at > since)
        .collect();
    matching.sort_by_key(|d| std::cmp::Reverse(d.created_at));
    let page: Vec<&Deployment> = matching.iter().take(limit).copied().collect();
    let next = (matching.len() > limit)
        .then(|| page.last().map(|d| d.created_at))
        .flatten();
    let prev = page.first().map(|d| d.created_at);
    ok(
        StatusCode::OK,
        json!({
            "pagination": {"count": page.len(), "next": next, "prev": prev},
            "deployments": page.iter().map(|d| state.deployment_view(d)).collect::<Vec<_>>(),
        }),
    )
}

pub(super) fn find_deployment<'a>(
    state: &'a State,
    id_or_url: &str,
    team: Option<&str>,
) -> Option<&'a Deployment> {
    state
        .deployments
        .values()
        .find(|d| d.id == id_or_url || d.host == id_or_url)
        .filter(|d| {
            state
                .projects
                .get(&d.project_id)
                .is_some_and(|p| p.team.as_deref() == team)
        })
}

async fn get_deployment(
    AxumState(shared): Ctx,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let state = shared.lock();
    match find_deployment(&state, &id, team(&query)) {
        Some(d) => ok(StatusCode::OK, state.deployment_view(d)),
        None => not_found("deployment", &id),
    }
}

async fn create_deployment(
    AxumState(shared): Ctx,
    QueryParams(query): QueryParams<Query>,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    let (state, input, team) = (&mut *state, &json_body(&body), team(&query));
    let Some(name) = input["name"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Invalid request: missing required property `name`.",
        );
    };
    let project_key = input["project"].as_str().unwrap_or(name);
    let Some(project_id) = state.project_id(project_key, team) else {
        return not_found("project", project_key);
    };
    let (sha, git_ref, source) = if let Some(old) = input["deploymentId"].as_str() {
        match find_deployment(state, old, team) {
            Some(d) => (d.sha.clone(), d.git_ref.clone(), "redeploy"),
            None => return not_found("deployment", old),
        }
    } else {
        let git = &input["gitSource"];
        if git["type"] != "github" {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Invalid request: `gitSource` of type github is required.",
            );
        }
        let repo_id = git["repoId"]
            .as_u64()
            .or_else(|| git["repoId"].as_str().and_then(|s| s.parse().ok()));
        if repo_id != Some(state.projects[&project_id].repo_id) {
            return error(
                StatusCode::BAD_REQUEST,
                "incorrect_git_source_info",
                "The repository is not connected to this project.",
            );
        }
        let sha = git["sha"].as_str().unwrap_or_default().to_owned();
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Invalid request: `gitSource.sha` must be a commit SHA.",
            );
        }
        (sha, git["ref"].as_str().unwrap_or("main").to_owned(), "git")
    };
    let id = state.next_id("dpl");
    let project_name = state.projects[&project_id].name.clone();
    let hash: String = id.chars().rev().take(9).collect();
    let deployment = Deployment {
        id: id.clone(),
        project_id: project_id.clone(),
        name: project_name.clone(),
        host: format!("{project_name}-{hash}.vercel.app"),
        fails: state.faults.fail_shas.contains(&sha),
        stuck: state.faults.stuck_shas.contains(&sha),
        sha,
        git_ref,
        created_at: now_ms(),
        target: input["target"].as_str().map(str::to_owned),
        auto_assign: input["autoAssignCustomDomains"].as_bool().unwrap_or(true),
        promoted: false,
        settled: false,
        source: source.to_owned(),
        commit: None,
        shares: Vec::new(),
    };
    let json = state.deployment_view(&deployment);
    state.deployments.insert(id, deployment);
    ok(StatusCode::OK, json)
}

fn alias(state: &mut State, p: &str, d: &str, team: Option<&str>, kind: &str) -> Response {
    let Some(project_id) = state.project_id(p, team) else {
        return not_found("project", p);
    };
    let Some(deployment) = state
        .deployments
        .get(d)
        .filter(|x| x.project_id == project_id)
        .cloned()
    else {
        return not_found("deployment", d);
    };
    if state.ready_state(&deployment, now_ms()) != "READY" {
        return error(
            StatusCode::BAD_REQUEST,
            "deployment_not_ready",
            format!("Deployment {d} is not READY"),
        );
    }
    if deployment.target.as_deref() != Some("production") {
        return error(
            StatusCode::CONFLICT,
            "not_production",
            "Only production deployments can be promoted; rebuild it for production instead",
        );
    }
    let current = state.projects[&project_id].production.clone();
    if current.as_deref() == Some(d) {
        return error(
            StatusCode::CONFLICT,
            "already_current",
            format!("Deployment {d} is already the current production deployment"),
        );
    }
    if kind == "rollback" && !deployment.promoted {
        return error(
            StatusCode::BAD_REQUEST,
            "not_rollback_candidate",
            "Rollback is only possible to a deployment that was previously aliased to production",
        );
    }
    if kind == "promote"
        && let Some(refusal) = rolling::refuse_promote_while_active(state, &project_id)
    {
        return refusal;
    }
    if kind == "promote" && deployment.promoted {
        return error(
            StatusCode::CONFLICT,
            "already_promoted",
            "This deployment was promoted before; roll back to it instead",
        );
    }
    state.make_production(&project_id, d, kind);
    ok(StatusCode::CREATED, json!({}))
}

/// Pause or unpause a project: 200 with an empty body, as Vercel answers both.
fn set_paused(state: &mut State, p: &str, team: Option<&str>, paused: bool) -> Response {
    let Some(project_id) = state.project_id(p, team) else {
        return not_found("project", p);
    };
    if let Some(project) = state.projects.get_mut(&project_id) {
        project.paused = paused;
        project.updated_at = now_ms();
    }
    StatusCode::OK.into_response()
}

pub(super) fn project_for<'a>(
    state: &'a State,
    p: &str,
    team: Option<&str>,
) -> Result<&'a super::state::Project, Box<Response>> {
    state
        .project_id(p, team)
        .map(|id| &state.projects[&id])
        .ok_or_else(|| Box::new(not_found("project", p)))
}

async fn list_env(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let state = shared.lock();
    let project = match project_for(&state, &p, team(&query)) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let decrypt = query.get("decrypt").is_some_and(|d| d == "true");
    let envs: Vec<Value> = project
        .env
        .iter()
        .filter(|e| query.get("target").is_none_or(|t| e.target.contains(t)))
        .map(|e| State::env_json(e, decrypt))
        .collect();
    ok(StatusCode::OK, json!({"envs": envs}))
}

fn env_write_fault(state: &mut State) -> Option<Response> {
    let faults = &mut state.faults;
    if faults.env_write_errors == 0 {
        return None;
    }
    if faults.env_writes_before_error > 0 {
        faults.env_writes_before_error -= 1;
        return None;
    }
    faults.env_write_errors -= 1;
    // A permanent refusal Vercel documents for env writes, so no retry papers over it.
    Some(error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Additional permissions are required to create production environment variables",
    ))
}

async fn create_env(
    AxumState(shared): Ctx,
    Path(p): Path<String>,
    QueryParams(query): QueryParams<Query>,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    let (state, p, input, team) = (&mut *state, p.as_str(), &json_body(&body), team(&query));
    let Some(project_id) = state.project_id(p, team) else {
        return not_found("project", p);
    };
    if let Some(fault) = env_write_fault(state) {
        return fault;
    }
    let items: Vec<Value> = match input {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let upsert = query.get("upsert").is_some_and(|u| u == "true");
    let mut created = Vec::new();
    let mut failed = Vec::new();
    for item in items {
        let (Some(key), Some(value), Some(kind)) = (
            item["key"].as_str(),
            item["value"].as_str(),
            item["type"].as_str(),
        ) else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Invalid request: `key`, `value`, `type` and `target` are required.",
            );
        };
        if !matches!(
            kind,
            "plain" | "encrypted" | "sensitive" | "secret" | "system"
        ) {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "Invalid request: `type` should be one of plain, encrypted, sensitive; got {kind}"
                ),
            );
        }
        let target: Vec<String> = match &item["target"] {
            Value::Array(t) => t
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            Value::String(t) => vec![t.clone()],
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Invalid request: `target` is required.",
                );
            }
        };
        if kind == "sensitive" && target.iter().any(|t| t == "development") {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Sensitive environment variables cannot target development.",
            );
        }
        let now = now_ms();
        let comment = item["comment"].as_str().map(str::to_owned);
        let env_id = state.next_id("env");
        let project = state.projects.get_mut(&project_id).expect("checked above");
        let existing = project
            .env
            .iter_mut()
            .find(|e| e.key == key && e.target.iter().any(|t| target.contains(t)));
        match existing {
            Some(existing) if upsert => {
                existing.value = value.to_owned();
                existing.kind = kind.to_owned();
                existing.target = target;
                existing.comment = comment;
                existing.updated_at = now;
                created.push(State::env_json(existing, false));
            }
            Some(existing) => failed.push(json!({"error": {"code": "ENV_CONFLICT", "message": format!("A variable with the name `{key}` already exists for the target production on branch undefined"), "key": key, "envVarKey": key, "envVarId": existing.id, "target": existing.target}})),
            None => {
                let env = EnvVar { id: env_id, key: key.to_owned(), value: value.to_owned(), kind: kind.to_owned(), target, comment, created_at: now, updated_at: now };
                created.push(State::env_json(&env, false));
                project.env.push(env);
            }
        }
        project.updated_at = now;
    }
    if created.is_empty() && !failed.is_empty() {
        let first = failed[0]["error"].clone();
        return ok(StatusCode::BAD_REQUEST, json!({"error": first}));
    }
    let created = if created.len() == 1 {
        created.remove(0)
    } else {
        Value::Array(created)
    };
    ok(
        StatusCode::CREATED,
        json!({"created": created, "failed": failed}),
    )
}

async fn get_env(
    AxumState(shared): Ctx,
    Path((p, id)): Path<(String, String)>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let state = shared.lock();
    let id = id.as_str();
    let project = match project_for(&state, &p, team(&query)) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match project.env.iter().find(|e| e.id == id) {
        Some(env) if env.kind == "sensitive" => {
            let mut json = State::env_json(env, false);
            if let Value::Object(map) = &mut json {
                map.remove("value");
            }
            ok(StatusCode::OK, json)
        }
        Some(env) => ok(StatusCode::OK, State::env_json(env, true)),
        None => not_found("environment variable", id),
    }
}

async fn edit_env(
    AxumState(shared): Ctx,
    Path((p, id)): Path<(String, String)>,
    QueryParams(query): QueryParams<Query>,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    let (state, p, id, input, team) = (
        &mut *state,
        p.as_str(),
        id.as_str(),
        &json_body(&body),
        team(&query),
    );
    let Some(project_id) = state.project_id(p, team) else {
        return not_found("project", p);
    };
    if let Some(fault) = env_write_fault(state) {
        return fault;
    }
    let project = state.projects.get_mut(&project_id).expect("checked above");
    let Some(env) = project.env.iter_mut().find(|e| e.id == id) else {
        return not_found("environment variable", id);
    };
    if let Some(v) = input["value"].as_str() {
        env.value = v.to_owned();
    }
    if let Some(k) = input["type"].as_str() {
        env.kind = k.to_owned();
    }
    if let Some(key) = input["key"].as_str() {
        env.key = key.to_owned();
    }
    if input.get("comment").is_some() {
        env.comment = input["comment"].as_str().map(str::to_owned);
    }
    if let Some(t) = input["target"].as_array() {
        env.target = t
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect();
    }
    env.updated_at = now_ms();
    ok(StatusCode::OK, State::env_json(env, false))
}

async fn delete_env(
    AxumState(shared): Ctx,
    Path((p, id)): Path<(String, String)>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let mut state = shared.lock();
    let (state, p, id, team) = (&mut *state, p.as_str(), id.as_str(), team(&query));
    let Some(project_id) = state.project_id(p, team) else {
        return not_found("project", p);
    };
    if let Some(fault) = env_write_fault(state) {
        return fault;
    }
    let project = state.projects.get_mut(&project_id).expect("checked above");
    match project.env.iter().position(|e| e.id == id) {
        Some(i) => {
            let env = project.env.remove(i);
            ok(StatusCode::OK, State::env_json(&env, false))
        }
        None => not_found("environment variable", id),
    }
}
