//! Vercel's published per-endpoint rate limits, counted per scope (team, or the token's
//! user) in fixed windows: every limited answer carries `X-RateLimit-Limit`, `-Remaining`
//! and `-Reset`, and a request past the limit gets Vercel's 429 with `Retry-After` and the
//! `error.limit` body. Tests change the limits through `/_emulator/limits`.

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How many requests a window of `window_secs` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limit {
    pub limit: u32,
    pub window_secs: u64,
}

impl Limit {
    const fn per(limit: u32, window_secs: u64) -> Limit {
        Limit { limit, window_secs }
    }
}

/// The rows of Vercel's "Limits" page (`/docs/limits`, "Rate limits", Pro plan) for the
/// endpoints steward calls. Project retrieval has no row of its own there; it is counted
/// like the other reads.
pub fn published() -> BTreeMap<String, Limit> {
    [
        // "Deployments per 5 minutes": Pro 120 (also 450 an hour, 6,000 a day).
        ("deployments.create", Limit::per(120, 300)),
        ("deployments.list", Limit::per(1000, 60)),
        ("deployments.get", Limit::per(500, 60)),
        ("projects.get", Limit::per(500, 60)),
        // "Project production deployment": promote and instant rollback.
        ("projects.production", Limit::per(500, 60)),
        ("env.list", Limit::per(500, 60)),
        ("env.create", Limit::per(120, 60)),
        ("env.update", Limit::per(120, 60)),
        ("env.delete", Limit::per(60, 60)),
    ]
    .into_iter()
    .map(|(name, limit)| (name.to_owned(), limit))
    .collect()
}

/// Which limit a request counts against, by method and path segments.
pub fn endpoint(method: &str, segments: &[&str]) -> Option<&'static str> {
    Some(match (method, segments) {
        ("POST", [_, "deployments"]) => "deployments.create",
        ("GET", [_, "deployments"]) => "deployments.list",
        ("GET", [_, "deployments", _]) => "deployments.get",
        ("GET", [_, "projects", _]) => "projects.get",
        ("POST", [_, "projects", _, "promote" | "rollback", _]) => "projects.production",
        ("GET", [_, "projects", _, "env"]) => "env.list",
        ("POST", [_, "projects", _, "env"]) => "env.create",
        ("PATCH", [_, "projects", _, "env", _]) => "env.update",
        ("DELETE", [_, "projects", _, "env", _]) => "env.delete",
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy)]
struct Window {
    ends_ms: u64,
    used: u32,
}

/// Per endpoint: requests let through, requests refused, and windows filled to the limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStats {
    pub allowed: u64,
    pub limited: u64,
    pub windows_filled: u64,
}

/// The limits in force and the windows being counted.
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub limits: BTreeMap<String, Limit>,
    windows: HashMap<(String, &'static str), Window>,
    pub stats: BTreeMap<String, EndpointStats>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            limits: published(),
            windows: HashMap::new(),
            stats: BTreeMap::new(),
        }
    }
}

/// A change to the limits: endpoint → new limit, or `null` for none. The key `*` sets
/// every endpoint.
pub type LimitsChange = BTreeMap<String, Option<Limit>>;

/// What a counted request is told: the window, and whether it was let through.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    limit: Limit,
    remaining: u32,
    reset_ms: u64,
    allowed: bool,
    now_ms: u64,
}

impl RateLimits {
    pub fn change(&mut self, change: LimitsChange) -> Result<(), String> {
        for (name, limit) in change {
            if limit.is_some_and(|l| l.limit == 0 || l.window_secs == 0) {
                return Err(format!("{name}: limit and windowSecs must be at least 1"));
            }
            let names: Vec<String> = if name == "*" {
                published().into_keys().collect()
            } else if published().contains_key(&name) {
                vec![name]
            } else {
                return Err(format!(
                    "unknown endpoint `{name}`; known: {}",
                    published().into_keys().collect::<Vec<_>>().join(", ")
                ));
            };
            for name in names {
                match limit {
                    Some(limit) => self.limits.insert(name, limit),
                    None => self.limits.remove(&name),
                };
            }
        }
        self.windows.clear();
        Ok(())
    }

    /// Count one request of `scope` against `endpoint`'s window at `now_ms`.
    pub fn count(&mut self, scope: &str, endpoint: &'static str, now_ms: u64) -> Option<Verdict> {
        let limit = *self.limits.get(endpoint)?;
        let window = self
            .windows
            .entry((scope.to_owned(), endpoint))
            .or_insert(Window {
                ends_ms: 0,
                used: 0,
            });
        if now_ms >= window.ends_ms {
            *window = Window {
                ends_ms: now_ms + limit.window_secs * 1000,
                used: 0,
            };
        }
        let allowed = window.used < limit.limit;
        let stats = self.stats.entry(endpoint.to_owned()).or_default();
        if allowed {
            window.used += 1;
            stats.allowed += 1;
            stats.windows_filled += u64::from(window.used == limit.limit);
        } else {
            stats.limited += 1;
        }
        Some(Verdict {
            limit,
            remaining: limit.limit - window.used,
            reset_ms: window.ends_ms,
            allowed,
            now_ms,
        })
    }
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The reset in whole seconds, rounded up: by then the window has surely ended.
    fn reset_secs(&self) -> u64 {
        self.reset_ms.div_ceil(1000)
    }

    pub fn add_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_secs()));
    }

    /// Vercel's 429 for a request past the limit.
    pub fn refusal(&self, endpoint: &str) -> Response {
        let retry = (self.reset_secs() * 1000)
            .saturating_sub(self.now_ms)
            .div_ceil(1000)
            .max(1);
        let total = self.limit.limit;
        let reset = self.reset_secs();
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"error": {
                "code": "rate_limited",
                "message": format!("The rate limit of {total} exceeded for '{endpoint}'. Try again in {retry} seconds"),
                "limit": {"remaining": 0, "reset": reset, "resetMs": self.reset_ms, "total": total},
            }})),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert("retry-after", HeaderValue::from(retry));
        self.add_headers(headers);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_lets_its_limit_through_then_refuses_until_it_resets() {
        let mut limits = RateLimits::default();
        let mut change = LimitsChange::new();
        change.insert(
            "projects.get".to_owned(),
            Some(Limit {
                limit: 2,
                window_secs: 1,
            }),
        );
        limits.change(change).expect("a known endpoint");
        let at = 10_000;
        assert!(
            limits
                .count("team", "projects.get", at)
                .is_some_and(|v| v.allowed())
        );
        assert!(
            limits
                .count("team", "projects.get", at + 1)
                .is_some_and(|v| v.allowed())
        );
        let refused = limits
            .count("team", "projects.get", at + 2)
            .expect("limited");
        assert!(!refused.allowed());
        assert_eq!(refused.reset_secs(), 11);
        assert!(
            limits
                .count("other", "projects.get", at + 2)
                .is_some_and(|v| v.allowed())
        );
        assert!(
            limits
                .count("team", "projects.get", at + 1000)
                .is_some_and(|v| v.allowed())
        );
        assert_eq!(limits.stats["projects.get"].limited, 1);
        assert_eq!(limits.stats["projects.get"].windows_filled, 1);
    }

    #[test]
    fn an_unknown_endpoint_name_is_refused_and_names_the_known_ones() {
        let mut change = LimitsChange::new();
        change.insert("projects.gett".to_owned(), None);
        let err = RateLimits::default().change(change).expect_err("unknown");
        assert!(err.contains("projects.get,"), "{err}");
    }

    #[test]
    fn endpoints_are_classified_as_vercel_counts_them() {
        assert_eq!(
            endpoint("GET", &["v9", "projects", "p"]),
            Some("projects.get")
        );
        assert_eq!(
            endpoint("POST", &["v10", "projects", "p", "promote", "d"]),
            Some("projects.production")
        );
        assert_eq!(
            endpoint("DELETE", &["v9", "projects", "p", "env", "e"]),
            Some("env.delete")
        );
        assert_eq!(endpoint("GET", &["v2", "user"]), None);
    }
}
