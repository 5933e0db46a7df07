//! Update communication, the guide's "Before Update" and "After Update": Slack-compatible
//! webhooks for before-update, after-update, failure and rollback. The daemon and the
//! terminal commands (`apply`, `rollback`, `restore`) send through the same notifier, so
//! a change made by hand is announced like one made by the daemon.
//!
//! Delivery runs on its own task with retries, so a slow or dead webhook never holds a
//! rollout back. Webhook URLs are secrets (a Slack URL is its own credential): they are
//! read only when sending and never logged.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::json;
use std::sync::{Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::manifest::{NotifyEvent, NotifySpec};
use crate::plan::{Plan, Step};
use crate::secret::SecretRef;

/// Attempts per delivery, and the per-request timeout.
const ATTEMPTS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(10);

/// One notification, before it is rendered for a webhook.
#[derive(Debug, Clone)]
pub struct Message {
    pub event: NotifyEvent,
    pub client: String,
    pub text: String,
    pub revision: Option<String>,
    pub plan: Option<String>,
}

impl Message {
    /// A change is due and its window is open: what will happen, and the guide's warnings.
    pub fn before_update(plan: &Plan, revision: Option<String>) -> Message {
        let mut text = format!(
            "steward: updating `{}` now ({})",
            plan.client,
            changes(plan)
        );
        if plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::MigrateUp { .. } | Step::MigrateDown { .. }))
        {
            text.push_str("\n⚠️ Database migration: expect a short maintenance window");
        }
        if !plan.lint.is_empty() {
            text.push_str(&format!("\n⚠️ Possibly breaking: {}", plan.lint.join("; ")));
        }
        if plan.notes.iter().any(|n| n == crate::plan::URGENT) {
            text.push_str(&format!("\n⚠️ {}", crate::plan::URGENT));
        }
        Message::new(NotifyEvent::BeforeUpdate, plan, text, revision)
    }

    pub fn after_update(plan: &Plan, revision: Option<String>) -> Message {
        let text = format!(
            "steward: ✅ `{}` updated ({}); verified, health-checked and baked",
            plan.client,
            changes(plan)
        );
        Message::new(NotifyEvent::AfterUpdate, plan, text, revision)
    }

    pub fn failure(client: &str, reason: &str, revision: Option<String>) -> Message {
        Message {
            event: NotifyEvent::Failure,
            client: client.to_owned(),
            text: format!("steward: ❌ `{client}` failed: {reason}"),
            revision,
            plan: None,
        }
    }

    pub fn rollback(plan: &Plan, step: &str, undone: usize, revision: Option<String>) -> Message {
        let text = format!(
            "steward: ↩️ `{}` rolled back {undone} step(s) after {step} failed",
            plan.client
        );
        Message::new(NotifyEvent::Rollback, plan, text, revision)
    }

    /// A change made by hand outside a plan (`rollback --code`, `restore`).
    pub fn manual(
        event: NotifyEvent,
        client: &str,
        text: String,
        revision: Option<String>,
    ) -> Message {
        Message {
            event,
            client: client.to_owned(),
            text,
            revision,
            plan: None,
        }
    }

    fn new(event: NotifyEvent, plan: &Plan, text: String, revision: Option<String>) -> Message {
        Message {
            event,
            client: plan.client.clone(),
            text,
            revision,
            plan: Some(plan.hash.clone()),
        }
    }

    /// Slack's incoming-webhook shape (`text`), plus a `steward` object for other receivers.
    fn payload(&self) -> serde_json::Value {
        json!({
            "text": self.text,
            "steward": {
                "event": event_name(self.event),
                "client": self.client,
                "revision": self.revision,
                "plan": self.plan,
            }
        })
    }
}

fn changes(plan: &Plan) -> String {
    let mut parts = Vec::new();
    if let Some((from, to)) = &plan.changes.code {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        parts.push(format!(
            "code {} → {}",
            from.as_deref().map_or("(none)".to_owned(), short),
            short(to)
        ));
    }
    if let Some((from, to)) = &plan.changes.schema {
        parts.push(format!(
            "schema {} → {to}",
            from.as_ref()
                .map_or("(none)".to_owned(), ToString::to_string)
        ));
    }
    if !plan.changes.env.is_empty() {
        // Keys only: values, even fingerprints, stay out of chat rooms.
        let keys: Vec<&str> = plan.changes.env.iter().map(|c| c.key.as_str()).collect();
        parts.push(format!("env {}", keys.join(", ")));
    }
    if parts.is_empty() {
        "no visible change".to_owned()
    } else {
        parts.join("; ")
    }
}

fn event_name(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::BeforeUpdate => "before-update",
        NotifyEvent::AfterUpdate => "after-update",
        NotifyEvent::Failure => "failure",
        NotifyEvent::Rollback => "rollback",
    }
}

/// A webhook: where, and which events it wants (none listed: all).
type Hook = (SecretRef, Vec<NotifyEvent>);

fn wants(hook: &Hook, event: NotifyEvent) -> bool {
    hook.1.is_empty() || hook.1.contains(&event)
}

/// One queue per webhook, drained in order by its own task: a receiver sees
/// before-update before after-update even when retries slow one delivery down.
struct Worker {
    hook: Hook,
    queue: mpsc::UnboundedSender<Message>,
}

/// Sends messages to the fleet's webhooks in the background.
#[derive(Clone)]
pub struct Notifier {
    workers: Arc<Mutex<Vec<Worker>>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
    http: reqwest::Client,
    on_delivery: Option<OnDelivery>,
}

/// Told how each delivery ended: (event, "delivered" | "failed"), for the daemon's metrics.
pub type OnDelivery = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("webhooks", &self.workers().len())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(spec: &NotifySpec, on_delivery: Option<OnDelivery>) -> Notifier {
        let notifier = Notifier {
            workers: Arc::default(),
            tasks: Arc::default(),
            http: reqwest::Client::builder()
                .user_agent(concat!("steward/", env!("CARGO_PKG_VERSION")))
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
            on_delivery,
        };
        notifier.configure(spec);
        notifier
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take the webhooks from a newly loaded fleet manifest. Unchanged hooks keep their
    /// queues; replaced ones finish what they hold, then stop.
    pub fn configure(&self, spec: &NotifySpec) {
        let hooks: Vec<Hook> = spec
            .webhooks
            .iter()
            .map(|w| (w.url.clone(), w.events.clone()))
            .collect();
        let mut workers = self.workers();
        if workers.iter().map(|w| &w.hook).eq(hooks.iter()) {
            return;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap finished workers so the set does not grow with the daemon's uptime.
        while tasks.try_join_next().is_some() {}
        *workers = hooks
            .into_iter()
            .map(|hook| {
                let (queue, mut rx) = mpsc::unbounded_channel::<Message>();
                let (http, url, on_delivery) =
                    (self.http.clone(), hook.0.clone(), self.on_delivery.clone());
                tasks.spawn(async move {
                    while let Some(message) = rx.recv().await {
                        let outcome = match deliver(&http, &url, &message).await {
                            Ok(()) => "delivered",
                            Err(reason) => {
                                tracing::warn!(
                                    event = event_name(message.event),
                                    client = %message.client,
                                    webhook = %url,
                                    %reason,
                                    "notification not delivered; the rollout goes on"
                                );
                                "failed"
                            }
                        };
                        if let Some(on_delivery) = &on_delivery {
                            on_delivery(event_name(message.event), outcome);
                        }
                    }
                });
                Worker { hook, queue }
            })
            .collect();
    }

    /// Queue `message` for every webhook that wants its event; returns at once.
    pub fn send(&self, message: Message) {
        for worker in self.workers().iter() {
            if wants(&worker.hook, message.event) {
                let _ = worker.queue.send(message.clone());
            }
        }
    }

    /// Deliver what is queued, waiting at most `limit`; used at exit, after which nothing
    /// more is sent.
    pub async fn flush(&self, limit: Duration) {
        self.workers().clear();
        let mut tasks =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("some notifications were still being retried at exit");
        }
    }
}

/// POST the payload, retrying transport errors, 429 and 5xx. The reason never holds the
/// URL: reqwest's errors print it, and the URL is the credential.
async fn deliver(http: &reqwest::Client, url: &SecretRef, message: &Message) -> Result<(), String> {
    let url = url.resolve().map_err(|e| e.to_string())?;
    let payload = message.payload();
    let attempt = || async {
        let response = http
            .post(url.expose())
            .json(&payload)
            .send()
            .await
            .map_err(|e| (true, e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            let retry = status.as_u16() == 429 || status.is_server_error();
            Err((retry, format!("webhook answered {status}")))
        }
    };
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(250))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(ATTEMPTS - 1)
                .with_jitter(),
        )
        .when(|(retry, _)| *retry)
        .await
        .map_err(|(_, reason)| reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            client: "acme".into(),
            steps: vec![Step::Preflight],
            changes: crate::plan::Changes {
                code: Some((None, "a".repeat(40))),
                ..Default::default()
            },
            holds: vec![],
            blocks: vec![],
            lint: vec![],
            notes: vec![],
            rehearsal: None,
            drift: vec![],
            interrupted: None,
            hash: "0123456789abcdef".into(),
            release: "fedcba9876543210".into(),
        }
    }

    #[test]
    fn payloads_are_slack_compatible_and_name_the_event_and_client() {
        let payload = Message::after_update(&plan(), Some("rev1".into())).payload();
        assert!(
            payload["text"]
                .as_str()
                .is_some_and(|t| t.contains("`acme` updated"))
        );
        assert_eq!(payload["steward"]["event"], "after-update");
        assert_eq!(payload["steward"]["client"], "acme");
        assert_eq!(payload["steward"]["plan"], "0123456789abcdef");
    }

    #[test]
    fn an_urgent_update_says_before_it_starts_that_it_bypasses_the_window() {
        let mut urgent = plan();
        urgent.notes.push(crate::plan::URGENT.to_owned());
        let text = Message::before_update(&urgent, None).text;
        assert!(
            text.contains("maintenance window bypassed: urgent"),
            "{text}"
        );
        let text = Message::before_update(&plan(), None).text;
        assert!(!text.contains("bypassed"), "{text}");
    }

    #[test]
    fn a_webhook_that_lists_events_gets_only_those_and_one_that_lists_none_gets_all() {
        let failures_only: Hook = (SecretRef::env("X"), vec![NotifyEvent::Failure]);
        assert!(wants(&failures_only, NotifyEvent::Failure));
        assert!(!wants(&failures_only, NotifyEvent::AfterUpdate));
        let all: Hook = (SecretRef::env("X"), vec![]);
        assert!(wants(&all, NotifyEvent::Rollback));
    }
}
