//! Synthetic traffic and the runtime logs it leaves: each deployment serves its share of
//! the project's traffic (all of it in production, the stage's percent as a canary), at
//! the volume and 5xx rate a fault sets for its sha. Requests are spaced evenly and the
//! failing ones spread evenly among them, so the logs of a window are a pure function of
//! the share history and the clock: two reads agree and a restart changes nothing.

use std::sync::Arc;

use axum::extract::{Path, Query as QueryParams, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Shared;
use super::routes::{find_deployment, not_found, team};
use super::state::{Deployment, State, now_ms};

type Query = std::collections::HashMap<String, String>;

/// Runtime logs are kept this long (Vercel keeps a day on Pro; an hour bounds the work).
const RETENTION_MS: u64 = 3_600_000;

/// A deployment's traffic at 100% of the project's.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Traffic {
    pub requests_per_second: f64,
    /// The fraction of requests answered 500, from 0 to 1.
    pub error_rate: f64,
}

/// From `from_ms` on, the deployment had `percent` of the project's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    pub from_ms: u64,
    pub percent: u8,
}

/// One served request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub at_ms: u64,
    pub status: u16,
    pub row: u64,
}

/// The requests a deployment served within the retention window up to `now`.
pub fn served(state: &State, d: &Deployment, now: u64) -> Vec<Served> {
    let Some(traffic) = state
        .faults
        .traffic
        .get(&d.sha)
        .or_else(|| state.faults.traffic.get("*"))
        .copied()
    else {
        return Vec::new();
    };
    let oldest = now.saturating_sub(RETENTION_MS);
    let mut out = Vec::new();
    for (i, share) in d.shares.iter().enumerate() {
        let until = d
            .shares
            .get(i + 1)
            .map_or(now, |next| next.from_ms)
            .min(now);
        let per_second = traffic.requests_per_second * f64::from(share.percent) / 100.0;
        if per_second <= 0.0 || until <= share.from_ms {
            continue;
        }
        let spacing_ms = 1000.0 / per_second;
        let first = (oldest.saturating_sub(share.from_ms) as f64 / spacing_ms).ceil() as u64;
        let mut k = first;
        loop {
            let at_ms = share.from_ms + (k as f64 * spacing_ms) as u64;
            if at_ms >= until {
                break;
            }
            let rate = traffic.error_rate.clamp(0.0, 1.0);
            let fails = ((k + 1) as f64 * rate).floor() > (k as f64 * rate).floor();
            out.push(Served {
                at_ms,
                status: if fails { 500 } else { 200 },
                row: (i as u64) << 40 | k,
            });
            k += 1;
        }
    }
    out
}

/// `GET /v1/projects/{p}/deployments/{d}/runtime-logs`: one JSON object a line.
pub async fn runtime_logs(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((p, d)): Path<(String, String)>,
    QueryParams(query): QueryParams<Query>,
) -> Response {
    let state = shared.lock();
    let Some(project_id) = state.project_id(&p, team(&query)) else {
        return not_found("project", &p);
    };
    let Some(deployment) =
        find_deployment(&state, &d, team(&query)).filter(|x| x.project_id == project_id)
    else {
        return not_found("deployment", &d);
    };
    let mut body = String::new();
    for request in served(&state, deployment, now_ms()) {
        let line = json!({
            "level": if request.status >= 500 { "error" } else { "info" },
            "message": if request.status >= 500 { "Error: synthetic failure" } else { "" },
            "messageTruncated": false,
            "requestMethod": "GET",
            "requestPath": "/",
            "responseStatusCode": request.status,
            "rowId": format!("{}-{:x}", deployment.id, request.row),
            "source": "serverless",
            "timestampInMs": request.at_ms,
            "domain": deployment.host,
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/stream+json"),
    );
    response
}
