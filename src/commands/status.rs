//! `steward status [CLIENT...] [--wave W] [--phase P]`: per client Converged / Pending /
//! Holding (why) / Failed (why), with schema, code and env state, the last change and,
//! for clients with maintenance windows, the next opening; counts in a footer.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::apply::{self, Prepared, record};
use crate::cli::{OutputFormat, StatusArgs};
use crate::exit::Exit;
use crate::manifest::schedule::WindowState;
use crate::manifest::{Client, Fleet};
use crate::output::{Printer, table};
use crate::plan::Mode;
use crate::postgres::{self, Access};
use crate::status::{self, Phase, Standing};
use crate::vercel::rolling::ReleaseState;

/// One client's line, typed: the JSON is this struct (`docs/operations.md`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    client: String,
    wave: Option<String>,
    phase: Phase,
    /// Why the client is not converged; absent when it is.
    reason: Option<String>,
    schema: Option<String>,
    schema_target: String,
    /// Up: the migrations still to run. Down: those a rollback would undo.
    schema_pending: Vec<String>,
    deployment: Option<String>,
    sha: Option<String>,
    /// The commit the manifest asks for (a tag resolved), when it could be resolved.
    sha_target: Option<String>,
    tag: Option<String>,
    env_drift: Vec<String>,
    env_pending: Vec<String>,
    last_backup: Option<String>,
    last_change: Option<LastChange>,
    /// Only for clients with maintenance windows.
    window: Option<WindowView>,
    /// A rolling release running now (from the daemon or another terminal): its stage
    /// and the new deployment's share of traffic. Absent while none runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<apply::RolloutProgress>,
}

/// The newest apply-level record: when, how it ended, and what it did.
#[derive(Debug, Serialize)]
struct LastChange {
    at: Option<DateTime<Utc>>,
    outcome: String,
    summary: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WindowView {
    open: bool,
    next_open: Option<DateTime<Utc>>,
    timezone: String,
}

pub async fn run(args: StatusArgs, printer: &Printer) -> Result<Exit> {
    let fleet = Fleet::load(&args.fleet.fleet)?;
    if let Some(wave) = &args.wave
        && !fleet.manifest.spec.waves.contains(wave)
    {
        anyhow::bail!(
            "--wave {wave}: the fleet has no such wave (spec.waves: {})",
            fleet.manifest.spec.waves.join(", ")
        );
    }
    let clients: Vec<&Client> = fleet
        .select(&args.clients)?
        .into_iter()
        .filter(|c| args.wave.is_none() || c.config.wave == args.wave)
        .collect();
    let vercel = apply::prepare_client(&fleet)?;
    let mut rows = Vec::new();
    for client in clients {
        let prepared =
            apply::prepare(&fleet, client, &vercel, Mode::Daemon, None, None, None).await;
        let mut row = match &prepared {
            Ok(prepared) => {
                let mut row = observed_row(&fleet, client, prepared);
                row.rollout = live_rollout(client, prepared).await;
                row
            }
            Err(err) => {
                // A spent Vercel window is a wait, not an error.
                let phase = if err.rate_limited_until().is_some() {
                    Phase::RateLimited
                } else {
                    Phase::Error
                };
                unobserved_row(client, phase, err.to_string())
            }
        };
        if args.phase.is_some_and(|p| p != row.phase) {
            continue;
        }
        row.last_change = last_change(client).await;
        rows.push(row);
    }
    let counts = status::counts(rows.iter().map(|r| &r.phase));
    match args.format {
        OutputFormat::Json => printer.out(serde_json::to_string_pretty(&serde_json::json!({
            "clients": rows,
            "counts": counts.iter().map(|(p, n)| (p.as_str(), n)).collect::<std::collections::BTreeMap<_, _>>(),
        }))?),
        OutputFormat::Text => {
            let mut out = text(&rows, args.clients.len() == 1);
            out.push_str(&status::footer(&counts));
            printer.out(out);
        }
    }
    let failed = rows
        .iter()
        .any(|r| matches!(r.phase, Phase::Failed | Phase::Error));
    Ok(if failed { Exit::Error } else { Exit::Success })
}

fn window(client: &Client) -> Option<WindowView> {
    let schedule = &client.config.schedule;
    if schedule.windows.is_empty() {
        return None;
    }
    let (open, next_open) = match schedule.state(Utc::now()) {
        WindowState::Open => (true, None),
        WindowState::Closed { next_open } => (false, next_open),
    };
    Some(WindowView {
        open,
        next_open,
        timezone: schedule.timezone.name().to_owned(),
    })
}

/// The project's rolling release while one runs. Asked only for clients under
/// `policy.rollout`, so a fleet without rollouts pays no extra request.
async fn live_rollout(client: &Client, prepared: &Prepared) -> Option<apply::RolloutProgress> {
    client.config.policy.rollout.as_ref()?;
    let release = match prepared
        .vercel
        .active_rolling_release(&prepared.project.id)
        .await
    {
        Ok(release) => release?,
        Err(err) => {
            tracing::warn!(client = %client.config.name, error = %err, "could not read the project's rolling release");
            return None;
        }
    };
    (release.state == ReleaseState::Active).then(|| apply::RolloutProgress {
        // Vercel counts stages from 0; status, like the daemon, from 1.
        stage: release.active_stage.as_ref().map_or(1, |s| s.index + 1),
        stages: release.stages.len().max(1),
        percent: release.percent(),
        error_rate: None,
    })
}

fn unobserved_row(client: &Client, phase: Phase, error: String) -> Row {
    Row {
        client: client.config.name.clone(),
        wave: client.config.wave.clone(),
        phase,
        reason: Some(error),
        schema: None,
        schema_target: client.config.database.schema_version.to_string(),
        schema_pending: Vec::new(),
        deployment: None,
        sha: None,
        sha_target: None,
        tag: None,
        env_drift: Vec::new(),
        env_pending: Vec::new(),
        last_backup: None,
        last_change: None,
        window: window(client),
        rollout: None,
    }
}

fn observed_row(fleet: &Fleet, client: &Client, prepared: &Prepared) -> Row {
    let plan = &prepared.plan;
    let Standing { phase, reason } = status::of_plan(plan);
    let production = prepared.observed.code.production.as_ref();
    let current = prepared.observed.schema.current.as_ref();
    let target = &client.config.database.schema_version;
    let pending = if current.is_none_or(|c| c < target) {
        fleet.catalog.between(current, target)
    } else {
        current.map_or_else(Vec::new, |c| fleet.catalog.between(Some(target), c))
    };
    Row {
        client: client.config.name.clone(),
        wave: client.config.wave.clone(),
        phase,
        reason: (!reason.is_empty()).then_some(reason),
        schema: current.map(ToString::to_string),
        schema_target: target.to_string(),
        schema_pending: pending.iter().map(|m| m.version.to_string()).collect(),
        deployment: production.map(|d| d.id.clone()),
        sha: production.and_then(|d| d.sha.clone()),
        sha_target: Some(prepared.desired.sha.clone()),
        tag: match &prepared.desired.version {
            crate::manifest::CodeVersion::Tag(tag) => Some(tag.clone()),
            crate::manifest::CodeVersion::Sha(_) => None,
        },
        env_drift: plan
            .changes
            .env
            .iter()
            .filter(|c| c.drift)
            .map(|c| c.key.clone())
            .collect(),
        env_pending: plan
            .changes
            .env
            .iter()
            .map(|c| format!("{}{}", c.action.sign(), c.key))
            .collect(),
        last_backup: prepared
            .observed
            .schema
            .last_backup
            .as_ref()
            .map(|b| b.id.clone()),
        last_change: None,
        window: window(client),
        rollout: None,
    }
}

/// The newest apply-level record or emergency stop (a paused client must show), read-only; none when the database cannot be read
/// (the row's phase already says why).
async fn last_change(client: &Client) -> Option<LastChange> {
    let url = client.config.database.url.resolve().ok()?;
    let mut conn = postgres::connect(&client.config.name, &url, Access::ReadOnly)
        .await
        .ok()?;
    let events = record::history(&mut conn, 50).await.ok();
    postgres::close(conn).await;
    let event = events?.into_iter().find(|e| {
        (e.step == "apply" && e.outcome != "started")
            || (matches!(e.step.as_str(), "pause" | "unpause") && e.outcome == "completed")
    })?;
    Some(LastChange {
        at: event.at,
        outcome: event.outcome.clone(),
        summary: status::event_summary(&event),
    })
}

fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}

fn or_dash(value: Option<&str>) -> String {
    value.map_or_else(|| "—".to_owned(), ToOwned::to_owned)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn window_cell(window: Option<&WindowView>) -> String {
    match window {
        None => "—".to_owned(),
        Some(w) if w.open => "open now".to_owned(),
        Some(w) => match (w.next_open, w.timezone.parse::<chrono_tz::Tz>()) {
            (Some(at), Ok(tz)) => at
                .with_timezone(&tz)
                .format("%a %Y-%m-%d %H:%M %Z")
                .to_string(),
            _ => "none in the coming week".to_owned(),
        },
    }
}

fn change_cell(change: Option<&LastChange>) -> String {
    change.map_or_else(
        || "—".to_owned(),
        |c| {
            let at =
                c.at.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
            format!("{at} {}", c.outcome.replace('_', " "))
        },
    )
}

/// The table; with one client, a detail line under it.
fn text(rows: &[Row], detailed: bool) -> String {
    let header = [
        "CLIENT",
        "WAVE",
        "PHASE",
        "SCHEMA",
        "CODE",
        "LAST CHANGE",
        "NEXT WINDOW",
        "REASON",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.client.clone(),
                or_dash(r.wave.as_deref()),
                r.phase.to_string(),
                or_dash(r.schema.as_deref()),
                r.sha.as_deref().map_or_else(|| "—".to_owned(), short),
                change_cell(r.last_change.as_ref()),
                window_cell(r.window.as_ref()),
                match (&r.rollout, &r.reason) {
                    (Some(rollout), Some(reason)) => format!("{reason} · {rollout}"),
                    (Some(rollout), None) => rollout.to_string(),
                    (None, reason) => or_dash(reason.as_deref()),
                },
            ]
        })
        .collect();
    let mut out = table::render(&header, &cells);
    if detailed {
        for r in rows {
            out.push_str(&format!(
                "  target schema {} (pending: {}), target code {}, production {}, last backup {}, env drift {}, env pending {}\n",
                r.schema_target,
                list(&r.schema_pending),
                match (&r.tag, &r.sha_target) {
                    (Some(tag), Some(sha)) => format!("{tag} ({})", short(sha)),
                    (None, Some(sha)) => short(sha),
                    _ => "—".to_owned(),
                },
                or_dash(r.deployment.as_deref()),
                or_dash(r.last_backup.as_deref()),
                list(&r.env_drift),
                list(&r.env_pending)
            ));
            if let Some(change) = &r.last_change {
                out.push_str(&format!("  last change: {}\n", change.summary));
            }
        }
    }
    out
}
