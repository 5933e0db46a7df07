//! Request handling: admin endpoints, injected faults, auth, then one handler per
//! operation. Paths are matched by hand (as in the Vercel emulator) because the same API
//! is served at `/` and under the GitHub Enterprise prefix `/api/v3`, and tag names may
//! contain slashes. It is one long file, like the Vercel emulator's: each handler is
//! short, and they share the auth, error and pagination helpers at the top.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query as AxumQuery, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::state::{
    CommitStatus, LoggedRequest, State, Urls, User, app_json, author_json, comment_json, ref_json,
    rfc3339, status_json, tag_object_json,
};

/// GitHub's own limit on issue and PR comment bodies.
const MAX_BODY_CHARS: usize = 65_536;
/// GitHub refuses longer status descriptions.
const MAX_DESCRIPTION_CHARS: usize = 140;
const DOCS: &str = "https://docs.github.com/rest";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

type Query = HashMap<String, String>;

/// GitHub's error shape: octocrab requires `message` and reads `documentation_url`.
fn error(status: StatusCode, message: impl Into<String>, docs: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "message": message.into(),
            "documentation_url": docs,
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

fn not_found(docs: &str) -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", docs)
}

fn validation_failed(resource: &str, field: &str, code: &str, message: Option<String>) -> Response {
    let mut detail = json!({"resource": resource, "field": field, "code": code});
    if let Some(message) = message {
        detail["message"] = Value::String(message);
    }
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({
            "message": "Validation Failed",
            "errors": [detail],
            "documentation_url": DOCS,
            "status": "422",
        })),
    )
        .into_response()
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query: Query = AxumQuery::<Query>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    if let Some(admin) = path.strip_prefix("/_emulator/") {
        return admin_request(&shared, &method, admin, &query, &body);
    }
    let latency = shared.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    // GitHub Enterprise Server serves the same API under /api/v3.
    let (prefix, route) = match path.strip_prefix("/api/v3") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => ("/api/v3", rest),
        _ => ("", path.as_str()),
    };
    let urls = Urls {
        api: format!("{}{prefix}", shared.base_url),
        web: shared.base_url.clone(),
    };
    let input: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let request = Request {
        method: &method,
        route,
        query: &query,
        input: &input,
        urls: &urls,
    };
    let mut response = api_request(&shared, &request, &headers);
    let mut state = shared.lock();
    state.requests.push(LoggedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        body: input.clone(),
        status: response.status().as_u16(),
    });
    if !response.headers().contains_key("x-ratelimit-remaining") {
        let used = state.requests.len() as u64;
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(5000u64));
        h.insert(
            "x-ratelimit-remaining",
            HeaderValue::from(5000u64.saturating_sub(used)),
        );
        h.insert("x-ratelimit-used", HeaderValue::from(used));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from(Utc::now().timestamp() + 3600),
        );
        h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    }
    response.headers_mut().insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    response
}

struct Request<'a> {
    method: &'a Method,
    /// The path without the `/api/v3` prefix.
    route: &'a str,
    query: &'a Query,
    input: &'a Value,
    urls: &'a Urls,
}

/// Who is calling, from the `Authorization` header.
enum Caller {
    /// The configured personal access token.
    Token(User),
    /// An installation token this emulator minted.
    Installation(User),
    /// A verified App JWT.
    App,
}

impl Caller {
    fn user(&self) -> Option<&User> {
        match self {
            Caller::Token(user) | Caller::Installation(user) => Some(user),
            Caller::App => None,
        }
    }
}

fn api_request(shared: &Shared, request: &Request<'_>, headers: &HeaderMap) -> Response {
    if let Some(fault) = injected_fault(shared) {
        return fault;
    }
    let caller = match authenticate(shared, headers) {
        Ok(caller) => caller,
        Err(response) => return *response,
    };
    let segments: Vec<&str> = request.route.trim_matches('/').split('/').collect();
    let method = request.method.as_str();
    match (&caller, segments.as_slice()) {
        (Caller::App, ["app"]) if method == "GET" => get_app(shared, request.urls),
        (Caller::App, ["app", "installations", id, "access_tokens"]) if method == "POST" => {
            create_installation_token(shared, id)
        }
        (_, ["app", ..]) => error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
            DOCS,
        ),
        (Caller::App, _) => error(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS),
        (caller, ["user"]) if method == "GET" => match caller {
            Caller::Token(user) => {
                let mut json = author_json(request.urls, user);
                json["name"] = Value::String(user.login.clone());
                ok(StatusCode::OK, json)
            }
            _ => error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
                "https://docs.github.com/rest/users/users#get-the-authenticated-user",
            ),
        },
        (caller, ["repos", owner, name, rest @ ..]) => {
            let repo = format!("{owner}/{name}").to_lowercase();
            let user = caller.user().cloned().unwrap_or_else(|| User {
                login: String::new(),
                id: 0,
                kind: "User".to_owned(),
            });
            let via_app = matches!(caller, Caller::Installation(_));
            repo_request(shared, request, &repo, rest, &user, via_app)
        }
        _ => not_found(DOCS),
    }
}

fn injected_fault(shared: &Shared) -> Option<Response> {
    let mut state = shared.lock();
    let faults = &mut state.faults;
    if faults.rate_limit > 0 {
        faults.rate_limit -= 1;
        let status = if faults.rate_limit_status == 403 {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        let reset = Utc::now().timestamp() + faults.reset_in_secs as i64;
        let message = match faults.retry_after_secs {
            Some(_) => {
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            }
            None => "API rate limit exceeded for user ID 1001.",
        };
        let mut response = error(
            status,
            message,
            "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api",
        );
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(5000u64));
        h.insert("x-ratelimit-remaining", HeaderValue::from(0u64));
        h.insert("x-ratelimit-used", HeaderValue::from(5000u64));
        h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
        if let Some(secs) = faults.retry_after_secs {
            h.insert("retry-after", HeaderValue::from(secs));
        }
        return Some(response);
    }
    if faults.errors > 0 {
        faults.errors -= 1;
        return Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server Error",
            DOCS,
        ));
    }
    None
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, Box<Response>> {
    let unauthorized = |message: &str| Box::new(error(StatusCode::UNAUTHORIZED, message, DOCS));
    let Some(value) = headers.get("authorization").and_then(|h| h.to_str().ok()) else {
        return Err(unauthorized("Requires authentication"));
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "))
    else {
        return Err(unauthorized("Bad credentials"));
    };
    let config = &shared.config;
    if token == config.token {
        return Ok(Caller::Token(shared.lock().user(&config.login)));
    }
    let mut state = shared.lock();
    if state.installation_tokens.contains_key(token) {
        let bot = format!("{}[bot]", config.app_slug);
        return Ok(Caller::Installation(state.user(&bot)));
    }
    drop(state);
    if token.starts_with("eyJ") && token.split('.').count() == 3 {
        return match verify_jwt(shared, token) {
            Ok(()) => Ok(Caller::App),
            Err(message) => Err(unauthorized(&message)),
        };
    }
    Err(unauthorized("Bad credentials"))
}

#[derive(Deserialize)]
struct Claims {
    iss: Value,
    exp: i64,
}

/// An App JWT: RS256, not expired, `iss` the configured App id; the signature is checked
/// when the emulator was given the App's public key.
fn verify_jwt(shared: &Shared, token: &str) -> Result<(), String> {
    let Some(app_id) = shared.config.app_id else {
        return Err("A JSON web token could not be decoded".to_owned());
    };
    let claims = match &shared.config.app_public_key_pem {
        Some(pem) => {
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| format!("the emulator's App public key is invalid: {e}"))?;
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            // GitHub's `iss` is a number, which jsonwebtoken's own issuer check cannot
            // read; it is checked below instead.
            validation.set_required_spec_claims(&["exp"]);
            jsonwebtoken::decode::<Claims>(token, &key, &validation)
                .map_err(|e| format!("A JSON web token could not be decoded ({e})"))?
                .claims
        }
        None => {
            let header = jsonwebtoken::decode_header(token)
                .map_err(|_| "A JSON web token could not be decoded".to_owned())?;
            if header.alg != jsonwebtoken::Algorithm::RS256 {
                return Err("A JSON web token could not be decoded".to_owned());
            }
            jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
                .map_err(|_| "A JSON web token could not be decoded".to_owned())?
                .claims
        }
    };
    if claims.exp <= Utc::now().timestamp() {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_owned());
    }
    let iss = match &claims.iss {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    if iss != Some(app_id) {
        return Err("'Issuer' claim ('iss') must be the App's id".to_owned());
    }
    Ok(())
}

fn get_app(shared: &Shared, urls: &Urls) -> Response {
    let config = &shared.config;
    let owner = shared.lock().user(&config.login);
    ok(
        StatusCode::OK,
        app_json(
            urls,
            config.app_id.unwrap_or_default(),
            &config.app_slug,
            &owner,
        ),
    )
}

fn create_installation_token(shared: &Shared, id: &str) -> Response {
    let docs =
        "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";
    let Ok(id) = id.parse::<u64>() else {
        return not_found(docs);
    };
    if shared
        .config
        .installation_id
        .is_some_and(|known| known != id)
    {
        return not_found(docs);
    }
    let token = format!("ghs_{}", random_alphanumeric(36));
    shared.lock().installation_tokens.insert(token.clone(), id);
    let expires = Utc::now() + chrono::Duration::hours(1);
    ok(
        StatusCode::CREATED,
        json!({
            "token": token,
            "expires_at": rfc3339(&expires),
            "permissions": {"issues": "write", "pull_requests": "write", "statuses": "write", "contents": "read", "metadata": "read"},
            "repository_selection": "all",
        }),
    )
}

fn random_alphanumeric(len: usize) -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn repo_request(
    shared: &Shared,
    request: &Request<'_>,
    repo: &str,
    rest: &[&str],
    user: &User,
    via_app: bool,
) -> Response {
    let urls = request.urls;
    let method = request.method.as_str();
    let config = &shared.config;
    let app = config.app_id.map(|app_id| {
        let owner = shared.lock().user(&config.login);
        app_json(urls, app_id, &config.app_slug, &owner)
    });
    let mut state = shared.lock();
    match (method, rest) {
        ("GET", ["issues", "comments", id]) => match find_comment(&state, repo, id) {
            Some(c) => ok(StatusCode::OK, comment_json(urls, c, app_of(c, &app))),
            None => not_found("https://docs.github.com/rest/issues/comments#get-an-issue-comment"),
        },
        // GitHub documents PATCH; POST has long been accepted as a synonym (and octocrab's
        // `update_comment` sends it), so both update.
        ("PATCH" | "POST", ["issues", "comments", id]) => {
            update_comment(&mut state, request, repo, id, user, &app)
        }
        ("DELETE", ["issues", "comments", id]) => {
            let docs = "https://docs.github.com/rest/issues/comments#delete-an-issue-comment";
            let Some(c) = find_comment(&state, repo, id) else {
                return not_found(docs);
            };
            if c.user.login != user.login {
                return error(
                    StatusCode::FORBIDDEN,
                    "Must have admin rights to Repository.",
                    docs,
                );
            }
            let id = c.id;
            state.comments.remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", ["issues", issue, "comments"]) => {
            let Ok(issue) = issue.parse::<u64>() else {
                return not_found(DOCS);
            };
            let since = request
                .query
                .get("since")
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
            let items: Vec<Value> = state
                .comments
                .values()
                .filter(|c| c.repo == repo && c.issue == issue)
                .filter(|c| since.is_none_or(|s| c.updated_at >= s))
                .map(|c| comment_json(urls, c, app_of(c, &app)))
                .collect();
            paginate(items, request)
        }
        ("POST", ["issues", issue, "comments"]) => {
            let Ok(issue) = issue.parse::<u64>() else {
                return not_found(DOCS);
            };
            let Some(body) = request.input["body"].as_str() else {
                return validation_failed("IssueComment", "body", "missing_field", None);
            };
            if let Some(refusal) = body_too_long(body) {
                return refusal;
            }
            let app_id = via_app.then_some(config.app_id.unwrap_or_default());
            let comment = state.add_comment(repo, issue, body, user.clone(), app_id);
            let json = comment_json(urls, &comment, app_of(&comment, &app));
            let mut response = ok(StatusCode::CREATED, json);
            if let Ok(location) = HeaderValue::from_str(&format!(
                "{}/repos/{repo}/issues/comments/{}",
                urls.api, comment.id
            )) {
                response.headers_mut().insert("location", location);
            }
            response
        }
        ("POST", ["statuses", sha]) => create_status(&mut state, request, repo, sha, user),
        ("GET", ["commits", reference, "statuses"]) => {
            let mut items: Vec<&CommitStatus> = state
                .statuses
                .iter()
                .filter(|s| s.repo == repo && s.sha == *reference)
                .collect();
            // "Statuses are returned in reverse chronological order."
            items.reverse();
            let items = items.iter().map(|s| status_json(urls, s)).collect();
            paginate(items, request)
        }
        ("GET", ["git", "ref" | "refs", "tags", tag @ ..]) if !tag.is_empty() => {
            let tag = tag.join("/");
            match state.tags.get(&(repo.to_owned(), tag)) {
                Some(t) => ok(StatusCode::OK, ref_json(urls, t)),
                None => not_found("https://docs.github.com/rest/git/refs#get-a-reference"),
            }
        }
        ("GET", ["git", "tags", sha]) => {
            let found = state
                .tags
                .values()
                .find(|t| t.repo == repo && t.object.as_deref() == Some(*sha));
            match found {
                Some(t) => ok(StatusCode::OK, tag_object_json(urls, t, sha)),
                None => not_found("https://docs.github.com/rest/git/tags#get-a-tag"),
            }
        }
        _ => not_found(DOCS),
    }
}

/// `performed_via_github_app` is the App on comments an App wrote, and null otherwise.
fn app_of(comment: &super::state::Comment, app: &Option<Value>) -> Option<Value> {
    comment.via_app.and(app.clone())
}

fn find_comment<'a>(state: &'a State, repo: &str, id: &str) -> Option<&'a super::state::Comment> {
    let id: u64 = id.parse().ok()?;
    state.comments.get(&id).filter(|c| c.repo == repo)
}

fn body_too_long(body: &str) -> Option<Response> {
    (body.chars().count() > MAX_BODY_CHARS).then(|| {
        validation_failed(
            "IssueComment",
            "body",
            "custom",
            Some(format!(
                "body is too long (maximum is {MAX_BODY_CHARS} characters)"
            )),
        )
    })
}

fn update_comment(
    state: &mut State,
    request: &Request<'_>,
    repo: &str,
    id: &str,
    user: &User,
    app: &Option<Value>,
) -> Response {
    let docs = "https://docs.github.com/rest/issues/comments#update-an-issue-comment";
    let Some(id) = find_comment(state, repo, id).map(|c| c.id) else {
        return not_found(docs);
    };
    let Some(body) = request.input["body"].as_str() else {
        return validation_failed("IssueComment", "body", "missing_field", None);
    };
    if let Some(refusal) = body_too_long(body) {
        return refusal;
    }
    let Some(comment) = state.comments.get_mut(&id) else {
        return not_found(docs);
    };
    // The emulator lets only a comment's author change it; steward must never edit others'.
    if comment.user.login != user.login {
        return error(
            StatusCode::FORBIDDEN,
            "Must have admin rights to Repository.",
            docs,
        );
    }
    comment.body = body.to_owned();
    comment.updated_at = Utc::now();
    let comment = comment.clone();
    ok(
        StatusCode::OK,
        comment_json(request.urls, &comment, app_of(&comment, app)),
    )
}

fn create_status(
    state: &mut State,
    request: &Request<'_>,
    repo: &str,
    sha: &str,
    user: &User,
) -> Response {
    let input = request.input;
    let Some(status) = input["state"].as_str() else {
        return validation_failed("Status", "state", "missing_field", None);
    };
    if !matches!(status, "error" | "failure" | "pending" | "success") {
        return validation_failed("Status", "state", "invalid", None);
    }
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return validation_failed(
            "Status",
            "sha",
            "custom",
            Some(format!("No commit found for SHA: {sha}")),
        );
    }
    let description = input["description"].as_str().map(str::to_owned);
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return validation_failed(
            "Status",
            "description",
            "custom",
            Some(format!(
                "description is too long (maximum is {MAX_DESCRIPTION_CHARS} characters)"
            )),
        );
    }
    let record = CommitStatus {
        id: state.next_id(),
        repo: repo.to_owned(),
        sha: sha.to_lowercase(),
        state: status.to_owned(),
        description,
        target_url: input["target_url"].as_str().map(str::to_owned),
        context: input["context"].as_str().unwrap_or("default").to_owned(),
        creator: user.clone(),
        created_at: Utc::now(),
    };
    let json = status_json(request.urls, &record);
    state.statuses.push(record);
    ok(StatusCode::CREATED, json)
}

/// GitHub's page-number pagination: `per_page` (default 30, at most 100) and `page`,
/// with a `Link` header of absolute URLs (`prev`, `next`, `last`, `first`).
fn paginate(items: Vec<Value>, request: &Request<'_>) -> Response {
    let query = request.query;
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(30)
        .min(100);
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut others: Vec<(&String, &String)> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "per_page" && k.as_str() != "page")
        .collect();
    others.sort();
    let link_to = |n: usize| {
        let mut url = format!("{}{}?", request.urls.api, request.route);
        for (k, v) in &others {
            url.push_str(&format!("{}={}&", encode(k), encode(v)));
        }
        format!("{url}per_page={per_page}&page={n}")
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to((page - 1).min(last))));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    }
    let mut response = ok(StatusCode::OK, Value::Array(chunk));
    if !links.is_empty()
        && let Ok(value) = HeaderValue::from_str(&links.join(", "))
    {
        response.headers_mut().insert("link", value);
    }
    response
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct SeedComment {
    repo: String,
    pr: u64,
    body: String,
    login: String,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
struct SeedTag {
    repo: String,
    tag: String,
    sha: String,
    #[serde(default)]
    annotated: bool,
}

fn admin_request(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &Query,
    body: &[u8],
) -> Response {
    let bad_request = |e: serde_json::Error| error(StatusCode::BAD_REQUEST, e.to_string(), DOCS);
    match (method.as_str(), path) {
        ("POST", "faults") => match serde_json::from_slice(body) {
            Ok(faults) => {
                shared.lock().faults = faults;
                ok(StatusCode::OK, json!({"ok": true}))
            }
            Err(e) => bad_request(e),
        },
        ("GET", "faults") => ok(
            StatusCode::OK,
            serde_json::to_value(&shared.lock().faults).unwrap_or_default(),
        ),
        ("GET", "requests") => ok(
            StatusCode::OK,
            serde_json::to_value(&shared.lock().requests).unwrap_or_default(),
        ),
        ("DELETE", "requests") => {
            shared.lock().requests.clear();
            ok(StatusCode::OK, json!({"ok": true}))
        }
        ("POST", "comments") => match serde_json::from_slice::<SeedComment>(body) {
            Ok(seed) => {
                let mut state = shared.lock();
                let user = state.user(&seed.login);
                let repo = seed.repo.to_lowercase();
                let ids: Vec<u64> = (0..seed.count)
                    .map(|_| {
                        state
                            .add_comment(&repo, seed.pr, &seed.body, user.clone(), None)
                            .id
                    })
                    .collect();
                ok(StatusCode::CREATED, json!({"ids": ids}))
            }
            Err(e) => bad_request(e),
        },
        ("GET", "comments") => {
            let state = shared.lock();
            let comments: Vec<&super::state::Comment> = state
                .comments
                .values()
                .filter(|c| query.get("repo").is_none_or(|r| c.repo == r.to_lowercase()))
                .filter(|c| query.get("pr").is_none_or(|p| c.issue.to_string() == *p))
                .collect();
            ok(
                StatusCode::OK,
                serde_json::to_value(comments).unwrap_or_default(),
            )
        }
        ("POST", "tags") => match serde_json::from_slice::<SeedTag>(body) {
            Ok(seed) => {
                let tag = shared.lock().add_tag(
                    &seed.repo.to_lowercase(),
                    &seed.tag,
                    &seed.sha,
                    seed.annotated,
                );
                ok(
                    StatusCode::CREATED,
                    serde_json::to_value(tag).unwrap_or_default(),
                )
            }
            Err(e) => bad_request(e),
        },
        ("GET", "statuses") => {
            let state = shared.lock();
            let statuses: Vec<&CommitStatus> = state
                .statuses
                .iter()
                .filter(|s| query.get("repo").is_none_or(|r| s.repo == r.to_lowercase()))
                .filter(|s| query.get("sha").is_none_or(|x| s.sha == *x))
                .collect();
            ok(
                StatusCode::OK,
                serde_json::to_value(statuses).unwrap_or_default(),
            )
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint {method} /_emulator/{path}"),
            DOCS,
        ),
    }
}
