//! The status server: `/healthz`, `/readyz`, `/metrics`, `/status` and a small page at `/`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
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
        .route("/", get(page))
        .route("/webhooks/github", post(github_webhook))
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
    let shared = shared.read().await;
    (
        [("content-type", "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<RwLock<Shared>>>) -> Response {
    let shared = shared.read().await;
    axum::Json(serde_json::json!({"revision": shared.metrics.revision, "clients": super::clients_now(&shared)}))
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn page(State(shared): State<Arc<RwLock<Shared>>>) -> Html<String> {
    let shared = shared.read().await;
    let mut rows = String::new();
    for (name, c) in &shared.clients {
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(name),
            escape(&c.phase.to_lowercase()),
            escape(&c.phase),
            escape(&c.reason),
            escape(c.last_change.as_deref().unwrap_or("—")),
            escape(c.next_window.as_deref().unwrap_or("—"))
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>steward</title><style>body{{font-family:system-ui;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}.converged{{color:green}}.failed,.error{{color:#b00}}.holding,.pending{{color:#a60}}</style></head><body><h1>steward</h1><p>fleet revision {}</p><table><tr><th>client</th><th>phase</th><th>reason</th><th>last change</th><th>next window</th></tr>\n{rows}</table></body></html>",
        escape(shared.metrics.revision.as_deref().unwrap_or("unknown"))
    ))
}
