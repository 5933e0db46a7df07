//! What the dashboard shows, as plain data: one client's desired state beside its live
//! state (from the daemon's last look), and the fleet's counts and wave progress. Pure:
//! built from values, no I/O, so tests can build and check them directly.
//!
//! Env values never reach a view: a key, whether it is sensitive, and the short keyed
//! fingerprints the plan already shows (none for sensitive values).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::apply::Prepared;
use crate::manifest::schedule::WindowState;
use crate::manifest::{Client, CodeVersion};
use crate::plan::{EnvAction, Outcome};
use crate::status::{self, Phase};

/// One client as the daemon last saw it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    pub observed_at: DateTime<Utc>,
    pub code: Pair,
    pub schema: Pair,
    /// Migrations between live and desired: to run up, or to undo down.
    pub schema_pending: Vec<String>,
    pub deployment: Option<String>,
    pub last_backup: Option<String>,
    pub env: Vec<EnvRow>,
    pub plan: PlanView,
}

/// A desired value beside the live one.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pair {
    pub desired: Option<String>,
    /// The tag the desired value came from, when the manifest names a tag.
    pub tag: Option<String>,
    pub live: Option<String>,
    pub same: bool,
}

/// One env key: fingerprints (never values), what the plan does to it, and drift.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvRow {
    pub key: String,
    pub sensitive: bool,
    pub desired: Option<String>,
    pub live: Option<String>,
    /// `add`, `change` or `remove` when the plan changes the key.
    pub change: Option<String>,
    /// Someone changed the variable behind steward's back.
    pub drift: bool,
}

/// The plan the daemon would run now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub hash: String,
    pub outcome: Outcome,
    pub steps: Vec<String>,
    pub holds: Vec<String>,
    pub blocks: Vec<String>,
    pub notes: Vec<String>,
}

impl ClientView {
    /// The view of one look (`apply::prepare`), taken at `now`.
    pub fn of(
        prepared: &Prepared,
        catalog: &crate::migrations::Catalog,
        now: DateTime<Utc>,
    ) -> Self {
        let (desired, observed, plan) = (&prepared.desired, &prepared.observed, &prepared.plan);
        let production = observed.code.production.as_ref();
        let live_sha = production.and_then(|d| d.sha.clone());
        let target = &desired.config.database.schema_version;
        let current = observed.schema.current.as_ref();
        let pending = if current.is_none_or(|c| c < target) {
            catalog.between(current, target)
        } else {
            current.map_or_else(Vec::new, |c| catalog.between(Some(target), c))
        };
        ClientView {
            observed_at: now,
            code: Pair {
                same: live_sha.as_deref() == Some(desired.sha.as_str()),
                desired: Some(desired.sha.clone()),
                tag: match &desired.version {
                    CodeVersion::Tag(tag) => Some(tag.clone()),
                    CodeVersion::Sha(_) => None,
                },
                live: live_sha,
            },
            schema: Pair {
                same: current == Some(target),
                desired: Some(target.to_string()),
                tag: None,
                live: current.map(ToString::to_string),
            },
            schema_pending: pending.iter().map(|m| m.version.to_string()).collect(),
            deployment: production.map(|d| d.id.clone()),
            last_backup: observed.schema.last_backup.as_ref().map(|b| b.id.clone()),
            env: env_rows(prepared),
            plan: PlanView {
                hash: plan.hash.clone(),
                outcome: plan.outcome(),
                steps: plan.steps.iter().map(ToString::to_string).collect(),
                holds: plan.holds.iter().map(ToString::to_string).collect(),
                blocks: plan.blocks.iter().map(ToString::to_string).collect(),
                notes: plan.notes.clone(),
            },
        }
    }
}

/// Every desired key, then every live key steward manages that the manifest dropped.
fn env_rows(prepared: &Prepared) -> Vec<EnvRow> {
    let changes = &prepared.plan.changes.env;
    let observed = &prepared.observed.env;
    let change_of = |key: &str| changes.iter().find(|c| c.key == key);
    let word = |action: EnvAction| {
        match action {
            EnvAction::Add => "add",
            EnvAction::Change => "change",
            EnvAction::Remove => "remove",
        }
        .to_owned()
    };
    let mut rows: Vec<EnvRow> = prepared
        .desired
        .env
        .iter()
        .map(|want| {
            let have = observed.iter().find(|o| o.key == want.key);
            let change = change_of(&want.key);
            EnvRow {
                key: want.key.clone(),
                sensitive: want.sensitive,
                desired: (!want.sensitive).then(|| want.fingerprint.clone()),
                live: have
                    .filter(|h| !h.sensitive && !want.sensitive)
                    .and_then(|h| h.fingerprint.clone()),
                change: change.map(|c| word(c.action)),
                drift: change.is_some_and(|c| c.drift) || have.is_some_and(|h| h.drifted),
            }
        })
        .collect();
    for change in changes.iter().filter(|c| c.action == EnvAction::Remove) {
        rows.push(EnvRow {
            key: change.key.clone(),
            sensitive: change.sensitive,
            desired: None,
            live: change.from.clone(),
            change: Some(word(change.action)),
            drift: change.drift,
        });
    }
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    rows
}

/// A client's schedule: its zone, windows, and the next opening in its own time zone.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowView {
    pub timezone: String,
    pub windows: Vec<String>,
    pub urgent: bool,
    pub open: bool,
    pub next_open: Option<DateTime<Utc>>,
    /// `Sat 2026-12-05 02:00 CET`: the opening as the client's clock shows it.
    pub next_open_local: Option<String>,
}

/// `None` for a client that may change at any time (no windows).
pub fn window(client: &Client, now: DateTime<Utc>) -> Option<WindowView> {
    let schedule = &client.config.schedule;
    if schedule.windows.is_empty() {
        return None;
    }
    let (open, next_open) = match schedule.state(now) {
        WindowState::Open => (true, None),
        WindowState::Closed { next_open } => (false, next_open),
    };
    Some(WindowView {
        timezone: schedule.timezone.name().to_owned(),
        windows: schedule.windows.iter().map(ToString::to_string).collect(),
        urgent: schedule.urgent,
        open,
        next_open,
        next_open_local: next_open.map(|t| {
            t.with_timezone(&schedule.timezone)
                .format("%a %Y-%m-%d %H:%M %Z")
                .to_string()
        }),
    })
}

/// The policy, as the manifest spells it.
pub fn policy(client: &Client) -> BTreeMap<&'static str, String> {
    let p = &client.config.policy;
    BTreeMap::from([
        ("apply", spelling(&p.apply)),
        ("destructive", spelling(&p.destructive)),
        ("backup", spelling(&p.backup)),
        ("rollback", spelling(&p.rollback)),
        ("irreversible", spelling(&p.irreversible)),
        ("bake", crate::progress::duration(p.bake)),
        (
            "health",
            format!(
                "GET {} expects {} within {}",
                p.health.path,
                p.health.expect_status,
                crate::progress::duration(p.health.timeout)
            ),
        ),
    ])
}

/// A manifest enum as its YAML spelling (`manual`, `deny`, …), through serde.
fn spelling<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// One wave's rollout: how many of its clients stand where.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveView {
    pub name: String,
    pub total: usize,
    pub converged: usize,
    pub attention: usize,
    pub counts: BTreeMap<Phase, usize>,
}

/// Waves in rollout order (clients without a wave last, as `(no wave)`), each with its
/// counts by phase.
pub fn waves<'a>(
    order: &[String],
    clients: impl IntoIterator<Item = (Option<&'a str>, Phase)>,
) -> Vec<WaveView> {
    let mut by_wave: BTreeMap<usize, (String, Vec<Phase>)> = BTreeMap::new();
    for (wave, phase) in clients {
        let index = wave
            .and_then(|w| order.iter().position(|o| o == w))
            .unwrap_or(order.len());
        let name = wave.map_or_else(|| "(no wave)".to_owned(), str::to_owned);
        by_wave
            .entry(index)
            .or_insert_with(|| (name, Vec::new()))
            .1
            .push(phase);
    }
    by_wave
        .into_values()
        .map(|(name, phases)| WaveView {
            total: phases.len(),
            converged: phases.iter().filter(|p| **p == Phase::Converged).count(),
            attention: phases.iter().filter(|p| p.needs_attention()).count(),
            counts: status::counts(&phases)
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            name,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_come_in_rollout_order_with_their_progress() {
        let order = vec!["canary".to_owned(), "main".to_owned()];
        let views = waves(
            &order,
            [
                (Some("main"), Phase::Pending),
                (Some("canary"), Phase::Converged),
                (None, Phase::Failed),
                (Some("canary"), Phase::Converged),
            ],
        );
        let names: Vec<&str> = views.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["canary", "main", "(no wave)"]);
        assert_eq!((views[0].converged, views[0].total), (2, 2));
        assert_eq!(views[2].attention, 1);
    }
}
