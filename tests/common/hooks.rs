//! A webhook receiver over real HTTP: records every JSON body, and answers 500 to the
//! first `fail_first` requests so retries can be seen.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<serde_json::Value>>,
    attempts: AtomicU32,
    fail_first: u32,
}

pub struct Receiver {
    inner: Arc<Inner>,
    pub url: String,
}

impl Receiver {
    pub async fn start(fail_first: u32) -> Receiver {
        let inner = Arc::new(Inner {
            fail_first,
            ..Default::default()
        });
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { inner, url }
    }

    pub fn received(&self) -> Vec<serde_json::Value> {
        self.inner.received.lock().expect("lock").clone()
    }

    pub fn attempts(&self) -> u32 {
        self.inner.attempts.load(Ordering::SeqCst)
    }

    /// The `steward.event` of each delivered message for `client`, in order.
    pub fn events_for(&self, client: &str) -> Vec<String> {
        self.received()
            .iter()
            .filter(|m| m["steward"]["client"] == client)
            .filter_map(|m| m["steward"]["event"].as_str().map(str::to_owned))
            .collect()
    }
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    let attempt = inner.attempts.fetch_add(1, Ordering::SeqCst);
    if attempt < inner.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    inner.received.lock().expect("lock").push(body);
    StatusCode::OK
}
