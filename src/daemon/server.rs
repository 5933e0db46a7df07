//! The status server: `/healthz`, `/readyz`, `/metrics`, `/status`, and the dashboard
//! (`/`, `/clients/{name}`, `/api/…`; see `dashboard`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::RwLock;

use super::Shared;
use crate::github::webhook::{push_to_default_branch, verify_signature};

pub fn router(shared: Arc<RwLock<Shared>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/webhooks/github", post(github_webhook))
        .merge(super::dashboard::routes())
        .with_state(shared)
}

/// `POST /webhooks/github`: a signed push to the default branch triggers a resync now
/// rather than at the next interval. The signature is checked over the raw bytes before
/// anything is parsed.
async fn github_webhook(
    State(shared): State<Arc<RwLock<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (secret, resync) = {
        let s = shared.read().await;
        (s.webhook_secret.clone(), s.resync.clone())
    };
    let Some(secret) = secret else {
        return (
            StatusCode::NOT_FOUND,
            "webhooks are off: set STEWARD_GITHUB_WEBHOOK_SECRET\n",
        )
            .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(err) = verify_signature(
        secret.expose().as_bytes(),
        &body,
        header("x-hub-signature-256"),
    ) {
        tracing::warn!(%err, "GitHub webhook refused");
        return (StatusCode::UNAUTHORIZED, format!("{err}\n")).into_response();
    }
    match header("x-github-event") {
        Some("ping") => "pong\n".into_response(),
        Some("push") => match push_to_default_branch(&body) {
            Some(repo) => {
                tracing::info!(%repo, "push to the default branch; resyncing now");
                resync.notify_one();
                (StatusCode::ACCEPTED, "resync triggered\n").into_response()
            }
            None => "not a push to the default branch; ignored\n".into_response(),
        },
        _ => "event ignored\n".into_response(),
    }
}

async fn readyz(State(shared): State<Arc<RwLock<Shared>>>) -> Response {
    let shared = shared.read().await;
    if !shared.loaded {
        return (StatusCode::SERVICE_UNAVAILABLE, "fleet not loaded yet\n").into_response();
    }
    match shared.last_loop {
        Some(at) if at.elapsed() <= shared.interval * 3 + Duration::from_secs(30) => {
            "ready\n".into_response()
        }
        Some(at) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("last loop finished {} s ago\n", at.elapsed().as_secs()),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "first loop still running\n",
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<RwLock<Shared>>>) -> Response {
    let metrics = shared.read().await.metrics.clone();
    (
        [("content-type", super::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<RwLock<Shared>>>) -> Response {
    let shared = shared.read().await;
    axum::Json(
        serde_json::json!({"revision": shared.revision, "clients": super::clients_now(&shared)}),
    )
    .into_response()
}
