//! What a client's own contacts read: plain words in the guide's terms (maintenance
//! window, downtime, breaking change, action from users), no plan hashes, no step names,
//! no error internals; and the summary every payload carries (changes and versions, env
//! keys only).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::manifest::NotifyEvent;
use crate::migrations::{Catalog, Impact};
use crate::plan::{Plan, Step};

/// What the texts for one client need besides the message itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFacts {
    pub timezone: Tz,
    /// `spec.notify.notes`, told with every announcement of a change.
    pub notes: Option<String>,
}

/// The impact of the migrations a plan runs up, from their header directives.
pub fn impact(plan: &Plan, catalog: &Catalog) -> Impact {
    let mut impact = Impact::default();
    for step in &plan.steps {
        if let Step::MigrateUp { versions, .. } = step {
            for migration in versions.iter().filter_map(|v| catalog.get(v)) {
                impact.add(&migration.impact);
            }
        }
    }
    impact
}

/// The plan's summary for payloads: changes old → new and the impact. Env keys only:
/// values and even fingerprints stay out of chat rooms and mailboxes.
pub fn summary(plan: &Plan, impact: &Impact) -> Value {
    let changes = &plan.changes;
    json!({
        "code": changes.code.as_ref().map(|(from, to)| json!({
            "from": from,
            "to": to,
            "tag": changes.tag,
        })),
        "schema": changes.schema.as_ref().map(|(from, to)| json!({
            "from": from.as_ref().map(ToString::to_string),
            "to": to.to_string(),
        })),
        "env": changes.env.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        "downtime": impact.downtime,
        "breaking": impact.breaking,
        "userAction": impact.user_action,
    })
}

/// What changes, in words a client reads.
pub fn changes_in_words(plan: &Plan) -> Vec<String> {
    let changes = &plan.changes;
    let mut lines = Vec::new();
    if let Some((_, to)) = &changes.code {
        let version = changes
            .tag
            .clone()
            .unwrap_or_else(|| to.chars().take(7).collect());
        lines.push(format!("a new version of the application ({version})"));
    }
    if let Some((_, to)) = &changes.schema {
        lines.push(format!("a database update (to version {to})"));
    }
    match changes.env.len() {
        0 => {}
        1 => lines.push("one configuration setting".to_owned()),
        n => lines.push(format!("{n} configuration settings")),
    }
    lines
}

/// A moment in the client's own time zone, like `Sat 6 Dec 2026, 02:00 CET (Europe/Berlin)`.
pub fn local_time(at: DateTime<Utc>, timezone: Tz) -> String {
    let local = at.with_timezone(&timezone);
    format!(
        "{} ({})",
        local.format("%a %-d %b %Y, %H:%M %Z"),
        timezone.name()
    )
}

/// Subject and body of a client message for a change.
pub fn for_change(
    event: NotifyEvent,
    client: &str,
    plan: Option<&Plan>,
    impact: &Impact,
    next_open: Option<DateTime<Utc>>,
    facts: &ClientFacts,
) -> (String, String) {
    let (subject, opening) = match event {
        NotifyEvent::Scheduled => {
            let when = next_open.map_or_else(
                || "the next maintenance window".to_owned(),
                |at| {
                    format!(
                        "the next maintenance window, {}",
                        local_time(at, facts.timezone)
                    )
                },
            );
            (
                format!("{client}: update scheduled"),
                format!("An update of {client} is scheduled for {when}."),
            )
        }
        NotifyEvent::BeforeUpdate => (
            format!("{client}: update starting"),
            format!("The update of {client} starts now."),
        ),
        NotifyEvent::AfterUpdate => (
            format!("{client}: update complete"),
            format!("The update of {client} is complete and has been checked."),
        ),
        NotifyEvent::Failure => (
            format!("{client}: update not completed"),
            format!(
                "The update of {client} could not be completed. The application stays on its previous version and our team is looking into it."
            ),
        ),
        NotifyEvent::Rollback => (
            format!("{client}: update undone"),
            format!("A change to {client} was undone; the application runs its previous version."),
        ),
    };
    let mut body = vec![opening];
    let announcing = matches!(
        event,
        NotifyEvent::Scheduled | NotifyEvent::BeforeUpdate | NotifyEvent::AfterUpdate
    );
    if let Some(plan) = plan.filter(|_| announcing) {
        let changes = changes_in_words(plan);
        if !changes.is_empty() {
            let verb = if event == NotifyEvent::AfterUpdate {
                "What changed"
            } else {
                "What changes"
            };
            body.push(format!("{verb}: {}.", changes.join("; ")));
        }
    }
    if matches!(event, NotifyEvent::Scheduled | NotifyEvent::BeforeUpdate) {
        body.push(
            if impact.downtime {
                "Downtime: yes, the application is unavailable while the update runs."
            } else {
                "Downtime: none expected."
            }
            .to_owned(),
        );
        body.push(
            if impact.breaking {
                "Breaking change: yes, something your users or integrations rely on changes."
            } else {
                "Breaking change: no."
            }
            .to_owned(),
        );
        if impact.user_action.is_empty() {
            body.push("Action from users: none needed.".to_owned());
        } else {
            body.push(format!(
                "Action from users: {}.",
                impact.user_action.join("; ").trim_end_matches('.')
            ));
        }
    }
    if announcing && let Some(notes) = facts.notes.as_deref().filter(|n| !n.trim().is_empty()) {
        body.push(format!("Notes: {}", notes.trim()));
    }
    (subject, body.join("\n"))
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
                tag: Some("v2.1.0".into()),
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
    fn a_scheduled_update_names_the_window_in_the_clients_time_zone_and_the_impact() {
        let facts = ClientFacts {
            timezone: chrono_tz::Europe::Berlin,
            notes: Some("Exports are paused during the window.".into()),
        };
        let impact = Impact {
            downtime: true,
            breaking: false,
            user_action: vec!["Sign in again".into()],
        };
        let at = "2026-12-05T01:00:00Z".parse().expect("time");
        let (subject, body) = for_change(
            NotifyEvent::Scheduled,
            "acme",
            Some(&plan()),
            &impact,
            Some(at),
            &facts,
        );
        assert_eq!(subject, "acme: update scheduled");
        assert!(
            body.contains("Sat 5 Dec 2026, 02:00 CET (Europe/Berlin)"),
            "{body}"
        );
        assert!(
            body.contains("a new version of the application (v2.1.0)"),
            "{body}"
        );
        assert!(body.contains("Downtime: yes"), "{body}");
        assert!(body.contains("Breaking change: no"), "{body}");
        assert!(body.contains("Action from users: Sign in again."), "{body}");
        assert!(body.contains("Notes: Exports are paused"), "{body}");
        assert!(!body.contains("0123456789abcdef"), "no plan hash: {body}");
    }

    #[test]
    fn a_failure_tells_the_client_no_internals() {
        let facts = ClientFacts {
            timezone: Tz::UTC,
            notes: None,
        };
        let (_, body) = for_change(
            NotifyEvent::Failure,
            "acme",
            Some(&plan()),
            &Impact::default(),
            None,
            &facts,
        );
        assert!(body.contains("could not be completed"), "{body}");
        assert!(!body.contains("aaaaaaa"), "{body}");
    }

    #[test]
    fn the_summary_carries_versions_and_env_keys_only() {
        let mut plan = plan();
        plan.changes.env.push(crate::plan::EnvChange {
            key: "STRIPE_KEY".into(),
            action: crate::plan::EnvAction::Change,
            sensitive: false,
            from: Some("fp-old".into()),
            to: Some("fp-new".into()),
            drift: false,
        });
        let summary = summary(&plan, &Impact::default());
        assert_eq!(summary["code"]["tag"], "v2.1.0");
        assert_eq!(summary["env"], json!(["STRIPE_KEY"]));
        assert!(!summary.to_string().contains("fp-new"), "{summary}");
    }
}
