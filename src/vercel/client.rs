//! The Vercel REST client: reqwest with rustls, the bearer token from a secret, `teamId`
//! on every call, and retries with backon within a budget: a bounded number of attempts
//! and a bounded total wait. 429 and 5xx are retried (a 5xx's `Retry-After` honoured);
//! other 4xx are final. Every request first takes its place in the process-wide
//! [`limiter`](super::limiter), which holds it until its endpoint's window has room, so a
//! 429's `Retry-After` / `X-RateLimit-Reset` is waited there, counted in the same budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::api::{Deployment, DeploymentList, EnvVar, Project};
use super::error::VercelError;
use super::limiter::{BucketKey, LIMITER, Window};
use crate::secret::Secret;

/// What one call may spend before it fails: attempts, and time asleep between them or
/// waiting for a rate-limit window (`Retry-After` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub attempts: u32,
    pub max_wait: Duration,
}

impl Default for Budget {
    /// Four attempts, and at most 90 s of waiting: one of Vercel's 60 s windows and slack.
    fn default() -> Self {
        Budget {
            attempts: 4,
            max_wait: Duration::from_secs(90),
        }
    }
}

/// The budget of clients made from now on in this process (`--vercel-max-attempts`,
/// `--vercel-max-wait`).
static DEFAULT_BUDGET: RwLock<Option<Budget>> = RwLock::new(None);

/// Set the budget every client made after this call starts with.
pub fn set_default_budget(budget: Budget) {
    *DEFAULT_BUDGET
        .write()
        .unwrap_or_else(PoisonError::into_inner) = Some(budget);
}

fn default_budget() -> Budget {
    DEFAULT_BUDGET
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .unwrap_or_default()
}

/// Told the status of every response (or `transport_error`): the daemon's
/// `steward_vercel_requests_total{status}`.
pub type ResponseCounter = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone)]
pub struct VercelClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
    team: Option<String>,
    budget: Budget,
    /// Who the requests are for (a client's name), shown while they wait on a window.
    label: Option<Arc<str>>,
    /// Requests sent (every attempt), for metrics and benchmarks.
    sent: Arc<AtomicU64>,
    responses: Option<ResponseCounter>,
}

impl std::fmt::Debug for VercelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VercelClient")
            .field("base", &self.base)
            .field("team", &self.team)
            .field("token", &self.token)
            .finish()
    }
}

impl VercelClient {
    pub fn new(base: &str, token: Secret, team: Option<String>) -> Result<Self, VercelError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("steward/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| VercelError::Transport {
                url: base.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(VercelClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            team,
            budget: default_budget(),
            label: None,
            sent: Arc::default(),
            responses: None,
        })
    }

    /// The same client (and connection pool) with another budget.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// The same client (and connection pool), its requests labelled as `client`'s while
    /// they wait on a rate-limit window (`/status` shows who waits).
    pub fn for_client(&self, client: &str) -> Self {
        let mut labelled = self.clone();
        labelled.label = Some(Arc::from(client));
        labelled
    }

    /// Report every response's status to `counter` (the daemon's metrics).
    pub fn with_response_counter(mut self, counter: ResponseCounter) -> Self {
        self.responses = Some(counter);
        self
    }

    fn count_response(&self, status: &str) {
        if let Some(count) = &self.responses {
            count(status);
        }
    }

    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// One API call with retries, its JSON answer read as `T`. `query` excludes
    /// `teamId`, which is added here.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, VercelError> {
        let bytes = self.call_raw(method, path, query, body).await?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        serde_json::from_value(value).map_err(|e| VercelError::Shape {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// One API call with retries, within the client's budget: the answer's bytes, for
    /// the calls whose answer is not one JSON document (runtime logs).
    pub(super) async fn call_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, VercelError> {
        let key = BucketKey::new(&self.base, self.team.as_deref(), method.as_str(), path);
        let deadline = Instant::now() + self.budget.max_wait;
        let attempts = AtomicU64::new(0);
        let attempt = || {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.call_once(&key, deadline, method.clone(), path, query, body)
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(20))
            .with_max_times(self.budget.attempts.saturating_sub(1) as usize)
            .with_jitter();
        let result = attempt
            .retry(backoff)
            .when(VercelError::is_retryable)
            .adjust(|err, backoff| {
                // When the schedule has run out the attempts are spent, whatever the
                // server asks for.
                let scheduled = backoff?;
                let wait = match err.status() {
                    // The limiter holds the next attempt until the window resets.
                    Some(429) => Duration::ZERO,
                    _ => err.retry_after().unwrap_or(scheduled),
                };
                (Instant::now() + wait <= deadline).then_some(wait)
            })
            .notify(|err, after| tracing::warn!(path, error = %err, retry_in_ms = after.as_millis() as u64, "Vercel call failed; retrying"))
            .await;
        result.map_err(|err| match err {
            // Held back by the limiter: that last attempt was never sent.
            VercelError::RateLimited {
                endpoint,
                limit,
                resets_at,
                ..
            } => VercelError::RateLimited {
                endpoint,
                limit,
                resets_at,
                attempts: (attempts.load(Ordering::Relaxed) as u32).saturating_sub(1),
                budget: self.budget,
            },
            err if err.status() == Some(429) => {
                LIMITER.gave_up();
                let (limit, resets_at) = LIMITER.snapshot(&key);
                VercelError::RateLimited {
                    endpoint: key.endpoint.clone(),
                    limit,
                    resets_at,
                    attempts: attempts.load(Ordering::Relaxed) as u32,
                    budget: self.budget,
                }
            }
            _ => err,
        })
    }

    /// One attempt: a place in the endpoint's window, then the request.
    async fn call_once(
        &self,
        key: &BucketKey,
        deadline: Instant,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, VercelError> {
        let ticket = LIMITER
            .acquire(key, deadline, self.label.as_deref())
            .await
            .map_err(|exhausted| VercelError::RateLimited {
                endpoint: exhausted.endpoint,
                limit: exhausted.limit,
                resets_at: exhausted.resets_at,
                attempts: 0,
                budget: self.budget,
            })?;
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(self.token.expose())
            .query(query);
        if let Some(team) = &self.team {
            request = request.query(&[("teamId", team)]);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                drop(ticket);
                self.count_response("transport_error");
                return Err(VercelError::Transport {
                    url: url.clone(),
                    reason: without_url(&e),
                });
            }
        };
        let status = response.status();
        self.count_response(status.as_str());
        let headers = response.headers().clone();
        let rate_limited = status == StatusCode::TOO_MANY_REQUESTS;
        let retry_after = rate_limited
            .then(|| header_secs(&headers, "retry-after"))
            .flatten();
        ticket.answered(
            Window::from_headers(&headers, retry_after.map(Duration::from_secs)),
            rate_limited,
        );
        let bytes = response.bytes().await.map_err(|e| VercelError::Transport {
            url: url.clone(),
            reason: without_url(&e),
        })?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(api_error(status, &headers, &value))
    }

    pub async fn project(&self, id_or_name: &str) -> Result<Project, VercelError> {
        self.call(
            Method::GET,
            &format!("/v9/projects/{id_or_name}"),
            &[("rollbackInfo", "true".to_owned())],
            None,
        )
        .await
    }

    pub async fn deployment(&self, id: &str) -> Result<Deployment, VercelError> {
        self.call(Method::GET, &format!("/v13/deployments/{id}"), &[], None)
            .await
    }

    /// Production deployments of a project at a commit, newest first, all pages.
    pub async fn deployments_for_sha(
        &self,
        project_id: &str,
        sha: &str,
    ) -> Result<Vec<Deployment>, VercelError> {
        let mut out = Vec::new();
        let mut until: Option<u64> = None;
        loop {
            let mut query = vec![
                ("projectId", project_id.to_owned()),
                ("target", "production".to_owned()),
                ("sha", sha.to_owned()),
                ("limit", "100".to_owned()),
            ];
            if let Some(until) = until {
                query.push(("until", until.to_string()));
            }
            let page: DeploymentList = self
                .call(Method::GET, "/v6/deployments", &query, None)
                .await?;
            out.extend(page.deployments.into_iter().map(Deployment::normalized));
            match page.pagination.and_then(|p| p.next) {
                Some(next) => until = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// A production build of `sha` that does not take the domains by itself (STAGED):
    /// steward health-checks it first, then promotes it.
    pub async fn create_deployment(
        &self,
        project: &Project,
        sha: &str,
    ) -> Result<Deployment, VercelError> {
        let link = project.link.as_ref().ok_or_else(|| VercelError::Shape {
            path: format!("/v9/projects/{}", project.id),
            reason: "the project is not linked to a Git repository, so a commit cannot be built"
                .to_owned(),
        })?;
        let body = json!({
            "name": project.name,
            "project": project.id,
            "target": "production",
            "autoAssignCustomDomains": false,
            "gitSource": {
                "type": "github",
                "repoId": link.repo_id,
                "ref": link.production_branch.as_deref().unwrap_or("main"),
                "sha": sha,
            },
            "meta": {"deployedBy": "steward"},
        });
        self.call(
            Method::POST,
            "/v13/deployments",
            &[("forceNew", "1".to_owned())],
            Some(&body),
        )
        .await
    }

    /// Rebuild an existing deployment (same commit) as a new production build, as the CLI's
    /// `vercel redeploy` does: how an env change reaches production without new code.
    pub async fn redeploy(
        &self,
        project: &Project,
        deployment_id: &str,
    ) -> Result<Deployment, VercelError> {
        let body = json!({
            "name": project.name,
            "deploymentId": deployment_id,
            "target": "production",
            "autoAssignCustomDomains": false,
            "meta": {"action": "redeploy", "deployedBy": "steward"},
        });
        self.call(
            Method::POST,
            "/v13/deployments",
            &[("forceNew", "1".to_owned())],
            Some(&body),
        )
        .await
    }

    pub async fn promote(&self, project_id: &str, deployment_id: &str) -> Result<(), VercelError> {
        self.call::<Value>(
            Method::POST,
            &format!("/v10/projects/{project_id}/promote/{deployment_id}"),
            &[],
            Some(&json!({})),
        )
        .await?;
        Ok(())
    }

    /// `PATCH /v9/projects/{id}` `{autoAssignCustomDomains}`; Vercel answers the project.
    pub async fn set_auto_assign(
        &self,
        project_id: &str,
        on: bool,
    ) -> Result<Project, VercelError> {
        self.call(
            Method::PATCH,
            &format!("/v9/projects/{project_id}"),
            &[],
            Some(&json!({"autoAssignCustomDomains": on})),
        )
        .await
    }

    pub async fn rollback(&self, project_id: &str, deployment_id: &str) -> Result<(), VercelError> {
        self.call::<Value>(
            Method::POST,
            &format!("/v9/projects/{project_id}/rollback/{deployment_id}"),
            &[],
            Some(&json!({})),
        )
        .await?;
        Ok(())
    }

    /// Pause (`true`) or unpause a project: while paused, every deployment of it answers
    /// 503 instead of serving, which is how all of a client's traffic stops at once.
    pub async fn set_paused(&self, project_id: &str, paused: bool) -> Result<(), VercelError> {
        let action = if paused { "pause" } else { "unpause" };
        self.call::<Value>(
            Method::POST,
            &format!("/v1/projects/{project_id}/{action}"),
            &[],
            None,
        )
        .await?;
        Ok(())
    }

    pub async fn list_env(&self, project_id: &str) -> Result<Vec<EnvVar>, VercelError> {
        #[derive(serde::Deserialize)]
        struct Envs {
            envs: Vec<EnvVar>,
        }
        let envs: Envs = self
            .call(
                Method::GET,
                &format!("/v10/projects/{project_id}/env"),
                &[],
                None,
            )
            .await?;
        Ok(envs.envs)
    }

    /// Current production values, decrypted where Vercel allows (never for `sensitive`):
    /// what an undo needs to put back.
    pub async fn env_values(
        &self,
        project_id: &str,
    ) -> Result<Vec<(String, Option<String>, String, Option<String>)>, VercelError> {
        let body: Value = self
            .call(
                Method::GET,
                &format!("/v10/projects/{project_id}/env"),
                &[("decrypt", "true".to_owned())],
                None,
            )
            .await?;
        let envs = body
            .get("envs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(envs
            .iter()
            .filter(|e| match &e["target"] {
                Value::Array(t) => t.iter().any(|x| x == "production"),
                Value::String(t) => t == "production",
                _ => false,
            })
            .map(|e| {
                let kind = e["type"].as_str().unwrap_or_default().to_owned();
                let value = (kind != "sensitive")
                    .then(|| e["value"].as_str().unwrap_or_default().to_owned());
                (
                    e["key"].as_str().unwrap_or_default().to_owned(),
                    value,
                    kind,
                    e["comment"].as_str().map(str::to_owned),
                )
            })
            .collect())
    }

    /// Create or update (upsert) a production variable.
    pub async fn upsert_env(
        &self,
        project_id: &str,
        key: &str,
        value: &Secret,
        kind: &str,
        comment: &str,
    ) -> Result<(), VercelError> {
        let body = json!({"key": key, "value": value.expose(), "type": kind, "target": ["production"], "comment": comment});
        self.call::<Value>(
            Method::POST,
            &format!("/v10/projects/{project_id}/env"),
            &[("upsert", "true".to_owned())],
            Some(&body),
        )
        .await?;
        Ok(())
    }

    pub async fn delete_env(&self, project_id: &str, env_id: &str) -> Result<(), VercelError> {
        self.call::<Value>(
            Method::DELETE,
            &format!("/v9/projects/{project_id}/env/{env_id}"),
            &[],
            None,
        )
        .await?;
        Ok(())
    }
}

/// reqwest errors print the URL; ours carry it separately, and never a token.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "");
    }
    text.trim()
        .trim_end_matches(['(', ')', ' ', ':'])
        .to_owned()
}

fn api_error(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
) -> VercelError {
    let error = body
        .get("error")
        .or_else(|| body.get("err"))
        .unwrap_or(body);
    let header_secs = |name: &str| header_secs(headers, name);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let retry_after = header_secs("retry-after")
        .map(Duration::from_secs)
        .or_else(|| {
            header_secs("x-ratelimit-reset")
                .map(|reset| Duration::from_secs(reset.saturating_sub(now)))
        })
        .or_else(|| {
            error
                .pointer("/limit/reset")
                .and_then(Value::as_u64)
                .map(|reset| Duration::from_secs(reset.saturating_sub(now)))
        });
    VercelError::Api {
        status: status.as_u16(),
        code: error
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_owned(),
        retry_after,
    }
}

fn header_secs(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().parse::<u64>().ok())
}
