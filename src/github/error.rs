//! What can go wrong talking to GitHub, whether trying again helps, and the one policy
//! that turns an error into the next action (wait and retry, or give up).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Attempts per call, the first included.
pub const MAX_ATTEMPTS: u32 = 4;

/// Rate-limit waits longer than this fail at once instead: a CI job had better report
/// "rate limited until 14:05 UTC" and be re-run than sit idle until the hourly window
/// resets (GitHub's primary limit resets up to an hour later).
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Permanent until someone changes the input, the token or its permissions.
    Never,
    /// Transient (a 5xx, a dropped connection): try again shortly.
    Soon,
    /// Rate limited: GitHub says when to come back.
    After(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("invalid GitHub settings: {0}")]
    Config(String),
    #[error("{action}: GitHub answered {status}: {message}{}", hint(*status))]
    Api {
        action: String,
        status: u16,
        message: String,
    },
    #[error("{action}: rate limited by GitHub ({status}: {message}); {}", wait_text(*wait, *reset_at))]
    RateLimited {
        action: String,
        status: u16,
        message: String,
        /// How long GitHub asks us to wait, from `retry-after` or `x-ratelimit-reset`.
        wait: Duration,
        reset_at: Option<DateTime<Utc>>,
    },
    #[error("{action}: cannot reach GitHub: {message}")]
    Transport { action: String, message: String },
    #[error("{action}: GitHub's answer is not what its API documents: {message}")]
    Unexpected { action: String, message: String },
    #[error("tag `{tag}` does not exist in {repo}")]
    TagNotFound { repo: String, tag: String },
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => " (check the credentials: GITHUB_TOKEN, or the GitHub App id, key and installation)",
        403 => " (the token lacks a permission this needs)",
        404 => " (it does not exist, or the token cannot see it)",
        _ => "",
    }
}

fn wait_text(wait: Duration, reset_at: Option<DateTime<Utc>>) -> String {
    match reset_at {
        Some(at) if wait > MAX_RATE_LIMIT_WAIT => format!(
            "the limit resets at {}; run again after that",
            at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        _ => format!("GitHub asked to wait {}s", wait.as_secs()),
    }
}

impl GithubError {
    /// Whether trying the same call again can help, and when.
    pub fn retry(&self) -> Retry {
        match self {
            GithubError::RateLimited { wait, .. } => Retry::After(*wait),
            GithubError::Api { status, .. } if *status >= 500 => Retry::Soon,
            GithubError::Transport { .. } => Retry::Soon,
            _ => Retry::Never,
        }
    }

    /// The HTTP status GitHub answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Api { status, .. } | GithubError::RateLimited { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// Map an octocrab error, naming what we were doing. Messages come from GitHub's body
    /// or the transport; no request header (so no token) is ever part of them.
    pub(crate) fn from_octocrab(action: &str, err: octocrab::Error) -> GithubError {
        let action = action.to_owned();
        match err {
            octocrab::Error::GitHub { source, .. } => from_response(action, &source),
            octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => {
                GithubError::Transport {
                    action,
                    message: chain(&err),
                }
            }
            octocrab::Error::JWT { source, .. } => GithubError::Config(format!(
                "cannot sign the GitHub App JWT with GITHUB_APP_PRIVATE_KEY: {source}"
            )),
            other => GithubError::Unexpected {
                action,
                message: chain(&other),
            },
        }
    }
}

/// An error and its causes on one line, without octocrab's backtraces.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![first_line(&err.to_string())];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = first_line(&cause.to_string());
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// GitHub signals rate limits with 403 or 429 plus `x-ratelimit-remaining: 0` (primary)
/// or `retry-after` (secondary); a 403 without either is a real permission refusal.
fn from_response(action: String, error: &octocrab::GitHubError) -> GithubError {
    let status = error.status_code.as_u16();
    let header = |name: &str| {
        error
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let retry_after = header("retry-after");
    let exhausted = header("x-ratelimit-remaining") == Some(0);
    let says_so = error.message.to_lowercase().contains("rate limit");
    let rate_limited =
        status == 429 || (status == 403 && (retry_after.is_some() || exhausted || says_so));
    if !rate_limited {
        return GithubError::Api {
            action,
            status,
            message: error.message.clone(),
        };
    }
    let reset_at = error.rate_limit_reset_at();
    let wait = match (retry_after, reset_at) {
        (Some(secs), _) => Duration::from_secs(secs),
        (None, Some(at)) if exhausted => {
            let secs = (at - Utc::now()).num_seconds().max(1);
            Duration::from_secs(secs as u64)
        }
        // GitHub: "If neither header is present, wait at least one minute".
        _ => Duration::from_secs(60),
    };
    GithubError::RateLimited {
        action,
        status,
        message: error.message.clone(),
        wait,
        reset_at,
    }
}

/// The retry policy, in one place: how long to wait before attempt `attempt + 1`, or
/// `None` to give up. A rate-limited request was refused before GitHub acted on it, so it
/// is safe to repeat even when it writes; after a 5xx or a dropped connection the write
/// may have happened, so only idempotent calls are repeated (a second `POST` could leave
/// two comments).
pub(crate) fn next_attempt(err: &GithubError, attempt: u32, idempotent: bool) -> Option<Duration> {
    if attempt >= MAX_ATTEMPTS {
        return None;
    }
    match err.retry() {
        Retry::Never => None,
        Retry::After(wait) if wait <= MAX_RATE_LIMIT_WAIT => Some(wait),
        Retry::After(_) => None,
        Retry::Soon if idempotent => Some(Duration::from_millis(250 << (attempt - 1))),
        Retry::Soon => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_limited(wait: u64) -> GithubError {
        GithubError::RateLimited {
            action: "listing comments".to_owned(),
            status: 429,
            message: "slow down".to_owned(),
            wait: Duration::from_secs(wait),
            reset_at: None,
        }
    }

    fn api(status: u16) -> GithubError {
        GithubError::Api {
            action: "updating the comment".to_owned(),
            status,
            message: "nope".to_owned(),
        }
    }

    #[test]
    fn a_short_rate_limit_is_waited_out_even_for_a_write() {
        assert_eq!(
            next_attempt(&rate_limited(2), 1, false),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn a_rate_limit_longer_than_a_minute_gives_up_at_once() {
        assert_eq!(next_attempt(&rate_limited(3600), 1, true), None);
    }

    #[test]
    fn a_server_error_is_retried_only_for_idempotent_calls() {
        assert!(next_attempt(&api(502), 1, true).is_some());
        assert_eq!(next_attempt(&api(502), 1, false), None);
    }

    #[test]
    fn client_errors_are_never_retried_and_attempts_are_bounded() {
        for status in [401, 403, 404, 422] {
            assert_eq!(next_attempt(&api(status), 1, true), None, "{status}");
        }
        assert_eq!(next_attempt(&api(500), MAX_ATTEMPTS, true), None);
    }
}
