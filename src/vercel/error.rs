//! Errors from the Vercel API, carrying Vercel's own `error.code` and `message`, and
//! saying whether a retry can help.

use std::time::Duration;

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
    /// The deployment's health check failed.
    #[error("health check of {url} failed: {reason}")]
    Unhealthy { url: String, reason: String },
}

impl VercelError {
    /// 429 and 5xx, and transport failures, may pass; other 4xx (402 included) will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            VercelError::Api { status, .. } => *status == 429 || *status >= 500,
            VercelError::Transport { .. } => true,
            _ => false,
        }
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
