//! Errors from the Vercel API, carrying Vercel's own `error.code` and `message`, and
//! saying whether a retry can help.

use std::time::{Duration, SystemTime};

use super::client::Budget;

#[derive(Debug, thiserror::Error)]
pub enum VercelError {
    /// Vercel answered with an error body.
    #[error("Vercel {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// From `Retry-After`, else `X-RateLimit-Reset`, else `error.limit.reset`.
        retry_after: Option<Duration>,
    },
    /// The endpoint's rate-limit window would not let the call through within its budget.
    #[error("{}", rate_limited(endpoint, *limit, *resets_at, *attempts, budget))]
    RateLimited {
        /// `METHOD /vN/route/{id}`.
        endpoint: String,
        /// Requests the window allows, as Vercel announced it.
        limit: Option<u32>,
        resets_at: SystemTime,
        /// Requests sent (0: held back, the window resets after the budget runs out).
        attempts: u32,
        budget: Budget,
    },
    /// The request never got an answer (connection refused, timeout).
    #[error("cannot reach Vercel at {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The answer was not what the API documents.
    #[error("unexpected Vercel response from {path}: {reason}")]
    Shape { path: String, reason: String },
    /// A deployment's build failed.
    #[error("build {deployment} failed: {code}: {message}")]
    BuildFailed {
        deployment: String,
        code: String,
        message: String,
    },
    /// A deployment did not become READY in time.
    #[error("build {deployment} still {state} after {} s", waited.as_secs())]
    Timeout {
        deployment: String,
        state: String,
        waited: Duration,
    },
    /// The deployment answered its health check badly: the release is judged by this.
    #[error("health check of {url} failed: {reason}")]
    Unhealthy { url: String, reason: String },
    /// The health check got no answer (DNS, connection, file descriptors, steward's own
    /// timeout): a local failure that says nothing about the release.
    #[error("health check of {url} got no answer: {reason}")]
    HealthUnreachable { url: String, reason: String },
    /// The health check's URL cannot be requested at all (a host that is no valid domain
    /// name): no later try can pass, so it is neither retried nor a verdict on the release.
    #[error("health check cannot request {url}: {reason}")]
    HealthUrl { url: String, reason: String },
}

impl VercelError {
    /// 429 and 5xx, and requests that got no answer, may pass; other 4xx (402 included)
    /// will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            VercelError::Api { status, .. } => *status == 429 || *status >= 500,
            VercelError::Transport { .. } | VercelError::HealthUnreachable { .. } => true,
            _ => false,
        }
    }

    /// A rate limit that outlasted the call's budget: retry after `resets_at`.
    pub fn rate_limited_until(&self) -> Option<SystemTime> {
        match self {
            VercelError::RateLimited { resets_at, .. } => Some(*resets_at),
            _ => None,
        }
    }

    /// Whether a later try may pass without anything changing: what a call retries, and
    /// a rate limit's reset.
    pub fn is_transient(&self) -> bool {
        self.is_retryable() || matches!(self, VercelError::RateLimited { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VercelError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            VercelError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn rate_limited(
    endpoint: &str,
    limit: Option<u32>,
    resets_at: SystemTime,
    attempts: u32,
    budget: &Budget,
) -> String {
    let limit = limit.map_or_else(String::new, |n| format!(" ({n} requests per window)"));
    let at = chrono::DateTime::<chrono::Utc>::from(resets_at).format("%Y-%m-%d %H:%M:%S UTC");
    let tried = match attempts {
        0 => "held back without sending".to_owned(),
        n => format!("gave up after {n} attempt(s)"),
    };
    format!(
        "Vercel rate limit on {endpoint}{limit} reached; it resets at {at}. steward {tried}: \
         a call may make {} attempt(s) and wait {} s in all (--vercel-max-attempts, \
         --vercel-max-wait)",
        budget.attempts,
        budget.max_wait.as_secs()
    )
}
