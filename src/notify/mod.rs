//! Update communication, the guide's "Before Update" and "After Update". Two audiences:
//! the fleet's operator webhooks (`spec.notify` of fleet.yaml) get every client's events
//! in operator words; each client's own contacts (`spec.notify` of the client: webhooks
//! and email) get their own events in plain words, without plan hashes. The daemon and
//! the terminal commands send through the same notifier, so a change made by hand is
//! announced like one made by the daemon.
//!
//! A message with an idempotency key is sent once: the first sender records the key in
//! the client's database ([`once`]). Delivery runs on background tasks with retries, one
//! queue per destination, so a slow or dead webhook or mail server never holds a rollout
//! back. Webhook and SMTP URLs are secrets: read only when sending and never logged.

mod email;
pub mod once;
pub mod text;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::{Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::manifest::{Fleet, NotifyEvent, SmtpSpec};
use crate::migrations::{Catalog, Impact};
use crate::plan::{Plan, Step};
use crate::secret::SecretRef;
use text::ClientFacts;

/// Attempts per delivery, and the per-request timeout.
const ATTEMPTS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(10);

/// One notification, before it is rendered for an audience.
#[derive(Debug, Clone)]
pub struct Message {
    pub event: NotifyEvent,
    pub client: String,
    /// The operators' text.
    pub text: String,
    pub revision: Option<String>,
    /// The plan the message is about, when there is one: its summary goes in every
    /// payload, its hash only to the operators.
    pub plan: Option<Box<Plan>>,
    /// When the window opens (`scheduled`).
    pub next_open: Option<DateTime<Utc>>,
    /// Sent once per key: see [`once`].
    pub key: Option<String>,
    /// Only for the operators: a change made by hand is told to the client by whoever
    /// made it, in their own words.
    pub operators_only: bool,
}

impl Message {
    /// A change waits for the client's maintenance window; sent once per release.
    pub fn scheduled(
        plan: &Plan,
        next_open: Option<DateTime<Utc>>,
        revision: Option<String>,
    ) -> Message {
        let when = next_open.map_or_else(
            || "the next maintenance window".to_owned(),
            |at| format!("the window opening {}", at.format("%Y-%m-%d %H:%M UTC")),
        );
        let text = format!(
            "steward: 🗓️ `{}` waits for {when} ({})",
            plan.client,
            changes(plan)
        );
        let mut message = Message::new(NotifyEvent::Scheduled, plan, text, revision);
        message.next_open = next_open;
        message.key = Some(key(&plan.client, NotifyEvent::Scheduled, &plan.release));
        message
    }

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
        let mut message = Message::new(NotifyEvent::BeforeUpdate, plan, text, revision);
        message.key = Some(key(&plan.client, NotifyEvent::BeforeUpdate, &plan.hash));
        message
    }

    pub fn after_update(plan: &Plan, revision: Option<String>) -> Message {
        let text = format!(
            "steward: ✅ `{}` updated ({}); verified, health-checked and baked",
            plan.client,
            changes(plan)
        );
        let mut message = Message::new(NotifyEvent::AfterUpdate, plan, text, revision);
        message.key = Some(key(&plan.client, NotifyEvent::AfterUpdate, &plan.hash));
        message
    }

    /// A run failed. With the plan, it is sent once per release (a failed release is not
    /// tried again until something changes), whoever saw it first.
    pub fn failure(
        client: &str,
        reason: &str,
        plan: Option<&Plan>,
        revision: Option<String>,
    ) -> Message {
        Message {
            event: NotifyEvent::Failure,
            client: client.to_owned(),
            text: format!("steward: ❌ `{client}` failed: {reason}"),
            revision,
            plan: plan.map(|p| Box::new(p.clone())),
            next_open: None,
            key: plan.map(|p| key(client, NotifyEvent::Failure, &p.release)),
            // Without a plan nothing was updated (the database or Vercel could not be
            // read): that is the operators' business, not news for the client.
            operators_only: plan.is_none(),
        }
    }

    /// The undo after a failure: how many steps were put back, and, loudly, any that
    /// could not be (`undo_errors`): then what runs is not what steward last recorded.
    pub fn rollback(
        plan: &Plan,
        step: &str,
        undone: usize,
        undo_errors: &[String],
        revision: Option<String>,
    ) -> Message {
        let text = if undo_errors.is_empty() {
            format!(
                "steward: ↩️ `{}` rolled back {undone} step(s) after {step} failed",
                plan.client
            )
        } else {
            format!(
                "steward: ⚠️ `{}` undo incomplete after {step} failed: {} of {undone} step(s) could not be put back ({}); a person must look",
                plan.client,
                undo_errors.len(),
                undo_errors.join("; ")
            )
        };
        let mut message = Message::new(NotifyEvent::Rollback, plan, text, revision);
        message.key = Some(key(&plan.client, NotifyEvent::Rollback, &plan.hash));
        message
    }

    /// Production moved to a commit steward did not promote: told to the operators once
    /// per deployment, whether the policy holds it or reverts it.
    pub fn outside_change(
        plan: &Plan,
        change: &crate::plan::OutsideChange,
        revision: Option<String>,
    ) -> Message {
        let what = match change.policy {
            crate::manifest::OutsideChangePolicy::Hold => "held",
            crate::manifest::OutsideChangePolicy::Revert => "reverting",
        };
        let text = format!("steward: ⚠️ `{}` {change}; {what}", plan.client);
        let mut message = Message::new(NotifyEvent::Failure, plan, text, revision);
        message.key = Some(format!(
            "{}:outside-change:{}",
            plan.client, change.deployment
        ));
        message.operators_only = true;
        message
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
            next_open: None,
            key: None,
            operators_only: true,
        }
    }

    fn new(event: NotifyEvent, plan: &Plan, text: String, revision: Option<String>) -> Message {
        Message {
            event,
            client: plan.client.clone(),
            text,
            revision,
            plan: Some(Box::new(plan.clone())),
            next_open: None,
            key: None,
            operators_only: false,
        }
    }

    /// The operators' payload: Slack's incoming-webhook shape (`text`), plus a `steward`
    /// object for other receivers.
    fn operator_payload(&self, impact: &Impact) -> serde_json::Value {
        json!({
            "text": self.text,
            "steward": {
                "event": event_name(self.event),
                "client": self.client,
                "revision": self.revision,
                "plan": self.plan.as_ref().map(|p| &p.hash),
                "release": self.plan.as_ref().map(|p| &p.release),
                "nextOpen": self.next_open,
                "summary": self.plan.as_ref().map(|p| text::summary(p, impact)),
            }
        })
    }
}

/// What a run that failed at `step` tells: the rollback, when anything was undone, then the
/// failure (a request's names its command: "restore failed at verify: ...").
pub fn failed_run(
    plan: &Plan,
    step: &str,
    error: &str,
    undone: usize,
    undo_errors: &[String],
    revision: Option<String>,
) -> Vec<Message> {
    let mut messages = Vec::new();
    if undone > 0 {
        messages.push(Message::rollback(
            plan,
            step,
            undone,
            undo_errors,
            revision.clone(),
        ));
    }
    let command = if plan.command == crate::plan::APPLY {
        String::new()
    } else {
        format!("{} ", plan.command)
    };
    let mut text = format!("{command}failed at {}", step_failed(step, error));
    for failed in undo_errors {
        text.push_str(&format!("; undo failed: {failed}"));
    }
    messages.push(Message::failure(&plan.client, &text, Some(plan), revision));
    messages
}

/// `step: error`, for failure texts; an error that already names its step is not
/// prefixed twice ("failed: bake: bake: ..." read badly).
pub fn step_failed(step: &str, error: &str) -> String {
    if error.starts_with(&format!("{step}:")) {
        error.to_owned()
    } else {
        format!("{step}: {error}")
    }
}

/// The idempotency key of one event about one plan or release of one client.
fn key(client: &str, event: NotifyEvent, hash: &str) -> String {
    format!("{client}:{}:{hash}", event_name(event))
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

pub fn event_name(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::Scheduled => "scheduled",
        NotifyEvent::BeforeUpdate => "before-update",
        NotifyEvent::AfterUpdate => "after-update",
        NotifyEvent::Failure => "failure",
        NotifyEvent::Rollback => "rollback",
    }
}

/// Who reads a destination: the operators, or the client's own contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Operators,
    Client,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Webhook(SecretRef),
    Email { smtp: SmtpSpec, to: Vec<String> },
}

/// One destination: where, for whom, which events (none listed: all) and, for a
/// client's contacts, which client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    target: Target,
    audience: Audience,
    events: Vec<NotifyEvent>,
    client: Option<String>,
}

impl Route {
    fn wants(&self, event: NotifyEvent, client: &str) -> bool {
        (self.events.is_empty() || self.events.contains(&event))
            && self.client.as_deref().is_none_or(|c| c == client)
    }
}

/// Every destination a fleet declares: the operators' webhooks, then each client's.
fn routes(fleet: &Fleet) -> Vec<Route> {
    let notify = &fleet.manifest.spec.notify;
    let mut routes: Vec<Route> = notify
        .webhooks
        .iter()
        .map(|w| Route {
            target: Target::Webhook(w.url.clone()),
            audience: Audience::Operators,
            events: w.events.clone(),
            client: None,
        })
        .collect();
    for (name, client) in &fleet.clients {
        let Some(contacts) = &client.spec.notify else {
            continue;
        };
        for hook in contacts.webhooks.iter().flatten() {
            routes.push(Route {
                target: Target::Webhook(hook.url.clone()),
                audience: Audience::Client,
                events: hook.events.clone(),
                client: Some(name.clone()),
            });
        }
        let to = contacts.email.clone().unwrap_or_default();
        if let (Some(smtp), false) = (&notify.smtp, to.is_empty()) {
            routes.push(Route {
                target: Target::Email {
                    smtp: smtp.clone(),
                    to,
                },
                audience: Audience::Client,
                events: Vec::new(),
                client: Some(name.clone()),
            });
        }
    }
    routes
}

/// A message rendered for both audiences, as the workers deliver it.
#[derive(Debug)]
struct Rendered {
    event: NotifyEvent,
    client: String,
    operators: serde_json::Value,
    clients: serde_json::Value,
    subject: String,
    body: String,
}

/// One queue per destination, drained in order by its own task: a receiver sees
/// before-update before after-update even when retries slow one delivery down.
struct Worker {
    route: Route,
    queue: mpsc::UnboundedSender<Arc<Rendered>>,
}

impl Worker {
    /// Whether this destination gets `message`: its event and client, and its audience.
    fn takes(&self, message: &Message) -> bool {
        let audience_ok = !(message.operators_only && self.route.audience == Audience::Client);
        audience_ok && self.route.wants(message.event, &message.client)
    }
}

/// What rendering and the once-only check need to know of each client.
#[derive(Debug, Clone)]
struct Contact {
    facts: ClientFacts,
    database: SecretRef,
}

#[derive(Default)]
struct State {
    workers: Vec<Worker>,
    contacts: HashMap<String, Contact>,
    catalog: Option<Arc<Catalog>>,
}

/// Sends messages to the operators' and the clients' destinations in the background.
#[derive(Clone)]
pub struct Notifier {
    state: Arc<Mutex<State>>,
    dispatch: Arc<Mutex<Option<mpsc::UnboundedSender<Message>>>>,
    dispatcher: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
    http: reqwest::Client,
    on_delivery: Option<OnDelivery>,
}

/// Told how each delivery ended: (event, "delivered" | "failed"), for the daemon's metrics.
pub type OnDelivery = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("destinations", &self.state().workers.len())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier with no destinations yet (see [`Notifier::configure`]). Spawns its
    /// dispatcher, so it is made inside the runtime.
    pub fn new(on_delivery: Option<OnDelivery>) -> Notifier {
        let (dispatch, mut rx) = mpsc::unbounded_channel::<Message>();
        let state: Arc<Mutex<State>> = Arc::default();
        let dispatch_state = state.clone();
        // One dispatcher keeps the order of messages while each waits for its key to be
        // recorded: after-update never overtakes before-update.
        let dispatcher = tokio::spawn(async move {
            // `scheduled` keys this process has settled: the daemon sees a held plan on
            // every pass, and asking the database each time would cost a connection per
            // held client per pass. (Other events are rare, and `retry` may forget them.)
            let mut settled = std::collections::HashSet::new();
            while let Some(message) = rx.recv().await {
                let scheduled_key = (message.event == NotifyEvent::Scheduled)
                    .then(|| message.key.clone())
                    .flatten();
                if scheduled_key.as_ref().is_some_and(|k| settled.contains(k)) {
                    continue;
                }
                // Nobody to tell: record nothing either, so a fleet without destinations
                // never gets a steward_notifications table in its clients' databases.
                let wanted = dispatch_state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .workers
                    .iter()
                    .any(|w| w.takes(&message));
                if !wanted {
                    continue;
                }
                let first = first_to_send(&dispatch_state, &message).await;
                settled.extend(scheduled_key);
                if !first {
                    tracing::debug!(
                        event = event_name(message.event),
                        client = %message.client,
                        "already notified; not sent again"
                    );
                    continue;
                }
                let state = dispatch_state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let rendered = Arc::new(render(&state, &message));
                for worker in state.workers.iter().filter(|w| w.takes(&message)) {
                    let _ = worker.queue.send(rendered.clone());
                }
            }
        });
        Notifier {
            state,
            dispatch: Arc::new(Mutex::new(Some(dispatch))),
            dispatcher: Arc::new(Mutex::new(Some(dispatcher))),
            tasks: Arc::default(),
            http: reqwest::Client::builder()
                .user_agent(concat!("steward/", env!("CARGO_PKG_VERSION")))
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
            on_delivery,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take the destinations and client facts from a newly loaded fleet. Unchanged
    /// destinations keep their queues; replaced ones finish what they hold, then stop.
    pub fn configure(&self, fleet: &Fleet) {
        let routes = routes(fleet);
        let mut state = self.state();
        state.contacts = fleet
            .clients
            .iter()
            .map(|(name, client)| {
                let notes = client.spec.notify.as_ref().and_then(|n| n.notes.clone());
                let contact = Contact {
                    facts: ClientFacts {
                        timezone: client.config.schedule.timezone,
                        notes,
                    },
                    database: client.config.database.url.clone(),
                };
                (name.clone(), contact)
            })
            .collect();
        state.catalog = Some(Arc::new(fleet.catalog.clone()));
        if state.workers.iter().map(|w| &w.route).eq(routes.iter()) {
            return;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap finished workers so the set does not grow with the daemon's uptime.
        while tasks.try_join_next().is_some() {}
        state.workers = routes
            .into_iter()
            .map(|route| {
                let (queue, mut rx) = mpsc::unbounded_channel::<Arc<Rendered>>();
                let (http, target, audience, on_delivery) = (
                    self.http.clone(),
                    route.target.clone(),
                    route.audience,
                    self.on_delivery.clone(),
                );
                tasks.spawn(async move {
                    while let Some(message) = rx.recv().await {
                        let outcome = match deliver(&http, &target, audience, &message).await {
                            Ok(()) => "delivered",
                            Err(reason) => {
                                tracing::warn!(
                                    event = event_name(message.event),
                                    client = %message.client,
                                    destination = %describe(&target),
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
                Worker { route, queue }
            })
            .collect();
    }

    /// Queue `message` for every destination that wants it; returns at once.
    pub fn send(&self, message: Message) {
        if let Some(dispatch) = self
            .dispatch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = dispatch.send(message);
        }
    }

    /// Deliver what is queued, waiting at most `limit`; used at exit, after which nothing
    /// more is sent.
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        // Closing the dispatch queue lets the dispatcher hand on what it holds, then end.
        self.dispatch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let dispatcher = self
            .dispatcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(dispatcher) = dispatcher {
            let _ = tokio::time::timeout_at(deadline, dispatcher).await;
        }
        self.state().workers.clear();
        let mut tasks =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            tracing::warn!("some notifications were still being retried at exit");
        }
    }
}

/// Whether this process should send `message`: yes without a key; else only when it
/// records the key first. When the record cannot be reached, it sends: a message twice
/// is better than a client never told.
async fn first_to_send(state: &Mutex<State>, message: &Message) -> bool {
    let Some(key) = &message.key else {
        return true;
    };
    let database = state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contacts
        .get(&message.client)
        .map(|c| c.database.clone());
    let Some(url) = database.and_then(|d| d.resolve().ok()) else {
        return true;
    };
    let claim = once::claim(&message.client, &url, key, event_name(message.event));
    match tokio::time::timeout(TIMEOUT, claim).await {
        Ok(Ok(first)) => first,
        Ok(Err(err)) => {
            tracing::warn!(client = %message.client, error = %err, "could not record a notification; sending it anyway");
            true
        }
        Err(_) => {
            tracing::warn!(client = %message.client, "recording a notification timed out; sending it anyway");
            true
        }
    }
}

fn render(state: &State, message: &Message) -> Rendered {
    let impact = match (&message.plan, &state.catalog) {
        (Some(plan), Some(catalog)) => text::impact(plan, catalog),
        _ => Impact::default(),
    };
    let facts = state
        .contacts
        .get(&message.client)
        .map(|c| c.facts.clone())
        .unwrap_or(ClientFacts {
            timezone: chrono_tz::Tz::UTC,
            notes: None,
        });
    let (subject, body) = text::for_change(
        message.event,
        &message.client,
        message.plan.as_deref(),
        &impact,
        message.next_open,
        &facts,
    );
    let clients = json!({
        "text": body,
        "steward": {
            "event": event_name(message.event),
            "client": message.client,
            "nextOpen": message.next_open,
            "summary": message.plan.as_ref().map(|p| text::summary(p, &impact)),
        }
    });
    Rendered {
        event: message.event,
        client: message.client.clone(),
        operators: message.operator_payload(&impact),
        clients,
        subject,
        body,
    }
}

/// A destination in logs: the secret's name, never its value.
fn describe(target: &Target) -> String {
    match target {
        Target::Webhook(url) => format!("webhook {url}"),
        Target::Email { to, .. } => format!("email to {}", to.join(", ")),
    }
}

/// Deliver one message, retrying what may pass later (transport errors, 429, 5xx,
/// transient SMTP replies). No reason holds a URL: the URL is the credential.
async fn deliver(
    http: &reqwest::Client,
    target: &Target,
    audience: Audience,
    message: &Rendered,
) -> Result<(), String> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(ATTEMPTS - 1)
        .with_jitter();
    match target {
        Target::Webhook(url) => {
            let url = url.resolve().map_err(|e| e.to_string())?;
            let payload = match audience {
                Audience::Operators => &message.operators,
                Audience::Client => &message.clients,
            };
            let attempt = || async {
                let response = http
                    .post(url.expose())
                    .json(payload)
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
                .retry(backoff)
                .when(|(retry, _)| *retry)
                .await
                .map_err(|(_, reason)| reason)
        }
        Target::Email { smtp, to } => {
            let attempt = || async {
                email::send(
                    smtp,
                    to,
                    &message.subject,
                    &message.body,
                    &message.clients,
                    TIMEOUT,
                )
                .await
            };
            attempt
                .retry(backoff)
                .when(|e| e.retry)
                .await
                .map_err(|e| e.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            command: crate::plan::APPLY.to_owned(),
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
            outside_change: None,
            hash: "0123456789abcdef".into(),
            release: "fedcba9876543210".into(),
        }
    }

    #[test]
    fn payloads_are_slack_compatible_and_name_the_event_and_client() {
        let payload = Message::after_update(&plan(), Some("rev1".into()))
            .operator_payload(&Impact::default());
        assert!(
            payload["text"]
                .as_str()
                .is_some_and(|t| t.contains("`acme` updated"))
        );
        assert_eq!(payload["steward"]["event"], "after-update");
        assert_eq!(payload["steward"]["client"], "acme");
        assert_eq!(payload["steward"]["plan"], "0123456789abcdef");
        assert_eq!(payload["steward"]["summary"]["code"]["to"], "a".repeat(40));
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
    fn a_destination_that_lists_events_gets_only_those_and_one_that_lists_none_gets_all() {
        let route = |events, client: Option<&str>| Route {
            target: Target::Webhook(SecretRef::env("X")),
            audience: Audience::Operators,
            events,
            client: client.map(str::to_owned),
        };
        let failures_only = route(vec![NotifyEvent::Failure], None);
        assert!(failures_only.wants(NotifyEvent::Failure, "acme"));
        assert!(!failures_only.wants(NotifyEvent::AfterUpdate, "acme"));
        assert!(route(vec![], None).wants(NotifyEvent::Rollback, "acme"));
        let acme_only = route(vec![], Some("acme"));
        assert!(acme_only.wants(NotifyEvent::Scheduled, "acme"));
        assert!(!acme_only.wants(NotifyEvent::Scheduled, "other"));
    }

    #[test]
    fn a_failure_names_its_step_once() {
        assert_eq!(step_failed("bake", "bake: 503 at /"), "bake: 503 at /");
        assert_eq!(step_failed("deploy", "build ERROR"), "deploy: build ERROR");
    }

    #[test]
    fn each_event_about_a_plan_has_its_own_key_and_a_failure_is_keyed_by_its_release() {
        let plan = plan();
        let before = Message::before_update(&plan, None).key;
        let after = Message::after_update(&plan, None).key;
        assert_ne!(before, after);
        assert_eq!(
            Message::failure("acme", "x", Some(&plan), None)
                .key
                .as_deref(),
            Some("acme:failure:fedcba9876543210")
        );
        assert_eq!(Message::failure("acme", "x", None, None).key, None);
    }
}
