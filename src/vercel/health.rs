//! Health checks are real HTTP requests to a deployment's URL. `spec.vercel.connectTo`
//! routes host names elsewhere, like curl's `--connect-to`: the request keeps its Host
//! header (and TLS name), only the TCP destination changes. Same path in production.
//!
//! Only the deployment's own answer judges it: a status other than the expected one is
//! [`VercelError::Unhealthy`]. No answer at all (DNS, a refused or broken connection, no
//! file descriptor left, steward's own timeout) says nothing about the release; it is
//! [`VercelError::HealthUnreachable`], retried with backoff and never judged.
//!
//! Checks use their own HTTP client and connection pool (one per set of routes in the
//! process), apart from the Vercel API client and the status server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::error::VercelError;
use crate::manifest::{ConnectTo, Health, Scheme};

/// Tries of one check when no answer comes: about 15 s of backoff in all.
const UNREACHABLE_ATTEMPTS: usize = 6;

fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// Name resolution with `connectTo` applied: a routed host resolves to its route's
/// address, any other through the system resolver.
#[derive(Debug)]
struct RoutedResolver {
    routes: Vec<ConnectTo>,
}

impl Resolve for RoutedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let target = self
            .routes
            .iter()
            .find(|r| matches(&r.host, &host))
            .map(|r| r.to.clone());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match target {
                Some(to) => match to.parse::<SocketAddr>() {
                    Ok(addr) => vec![addr],
                    Err(_) => tokio::net::lookup_host(to.as_str()).await?.collect(),
                },
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(addrs)
        })
    }
}

/// The health-check client for one set of routes: its own pool and timeouts.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    http: reqwest::Client,
    routes: Arc<[ConnectTo]>,
}

/// One checker per distinct `connectTo` list in the process, so every check of a fleet
/// reuses one pool.
static CHECKERS: LazyLock<Mutex<HashMap<String, HealthChecker>>> = LazyLock::new(Default::default);

impl HealthChecker {
    pub fn new(routes: &[ConnectTo]) -> Result<HealthChecker, VercelError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("steward-health/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(4)
            .pool_idle_timeout(Duration::from_secs(30))
            .dns_resolver(Arc::new(RoutedResolver {
                routes: routes.to_vec(),
            }))
            .build()
            .map_err(|e| VercelError::HealthUnreachable {
                url: "(health-check client)".to_owned(),
                reason: e.to_string(),
            })?;
        Ok(HealthChecker {
            http,
            routes: routes.into(),
        })
    }

    /// The process's checker for these routes.
    pub fn for_routes(routes: &[ConnectTo]) -> Result<HealthChecker, VercelError> {
        let key = serde_json::to_string(routes).unwrap_or_default();
        let mut checkers = CHECKERS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = checkers.get(&key) {
            return Ok(found.clone());
        }
        let checker = HealthChecker::new(routes)?;
        checkers.insert(key, checker.clone());
        Ok(checker)
    }

    /// One GET of `<host><path>`, judged by its answer only.
    pub async fn check_once(&self, host: &str, health: &Health) -> Result<(), VercelError> {
        let route = self.routes.iter().find(|r| matches(&r.host, host));
        let scheme = match route.map(|r| r.scheme) {
            Some(Scheme::Http) => "http",
            _ => "https",
        };
        let url = format!("{scheme}://{host}{}", health.path);
        let response = self
            .http
            .get(&url)
            .timeout(health.timeout)
            .send()
            .await
            .map_err(|e| {
                let (url, reason) = (url.clone(), describe(&e));
                if e.is_builder() {
                    VercelError::HealthUrl { url, reason }
                } else {
                    VercelError::HealthUnreachable { url, reason }
                }
            })?;
        let status = response.status().as_u16();
        if status == health.expect_status {
            Ok(())
        } else {
            Err(VercelError::Unhealthy {
                url,
                reason: format!("answered {status}, expected {}", health.expect_status),
            })
        }
    }

    /// A check that retries, with backoff, while no answer comes; the first answer
    /// decides.
    pub async fn check(&self, host: &str, health: &Health) -> Result<(), VercelError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(UNREACHABLE_ATTEMPTS - 1)
            .with_jitter();
        (|| self.check_once(host, health))
            .retry(backoff)
            .when(|err| matches!(err, VercelError::HealthUnreachable { .. }))
            .notify(|err, after| {
                tracing::warn!(host, error = %err, retry_in_ms = after.as_millis() as u64, "health check got no answer; retrying")
            })
            .await
    }
}

/// What went wrong, with its cause chain (reqwest's own text is only "error sending
/// request"), without the URL, which the error carries apart.
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "no answer within the health timeout".to_owned()
    } else if err.is_builder() {
        "not a URL that can be requested".to_owned()
    } else if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// GET `<host><path>` and expect the policy's status within its timeout, through the
/// process's checker for `routes`; no answer is retried (see [`HealthChecker::check`]).
pub async fn check(host: &str, health: &Health, routes: &[ConnectTo]) -> Result<(), VercelError> {
    HealthChecker::for_routes(routes)?.check(host, health).await
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcard_routes_match_every_subdomain_and_only_those() {
        assert!(matches("*.vercel.app", "acme-web-abc.vercel.app"));
        assert!(!matches("*.vercel.app", "vercel.app.evil.com"));
        assert!(matches("api.example.com", "api.example.com"));
    }
}
