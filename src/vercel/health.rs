//! Health checks are real HTTP requests to a deployment's URL. `spec.vercel.connectTo`
//! routes host names elsewhere, like curl's `--connect-to`: the request keeps its Host
//! header (and TLS name), only the TCP destination changes. Same path in production.

use std::net::SocketAddr;

use super::error::VercelError;
use crate::manifest::{ConnectTo, Health, Scheme};

fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// GET `<host><path>` and expect the policy's status within its timeout.
pub async fn check(host: &str, health: &Health, routes: &[ConnectTo]) -> Result<(), VercelError> {
    let route = routes.iter().find(|r| matches(&r.host, host));
    let scheme = match route.map(|r| r.scheme) {
        Some(Scheme::Http) => "http",
        _ => "https",
    };
    let url = format!("{scheme}://{host}{}", health.path);
    let mut builder = reqwest::Client::builder()
        .timeout(health.timeout)
        .redirect(reqwest::redirect::Policy::limited(3));
    if let Some(route) = route {
        let addr = resolve(&route.to)
            .await
            .map_err(|reason| VercelError::Unhealthy {
                url: url.clone(),
                reason,
            })?;
        builder = builder.resolve(host, addr);
    }
    let client = builder.build().map_err(|e| VercelError::Unhealthy {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| VercelError::Unhealthy {
            url: url.clone(),
            reason: e.to_string(),
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

async fn resolve(to: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = to.parse() {
        return Ok(addr);
    }
    tokio::net::lookup_host(to)
        .await
        .map_err(|e| format!("cannot resolve {to}: {e}"))?
        .next()
        .ok_or_else(|| format!("{to} resolves to nothing"))
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
