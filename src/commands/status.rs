//! `steward status [CLIENT...]`: per client Converged / Pending / Holding (why) /
//! Failed (why), with schema, code and env state, last change and next window.

use anyhow::Result;
use serde_json::json;

use crate::apply::{self, record};
use crate::cli::{OutputFormat, StatusArgs};
use crate::exit::Exit;
use crate::manifest::Fleet;
use crate::manifest::schedule::WindowState;
use crate::output::Printer;
use crate::plan::{Hold, Mode, Outcome};
use crate::postgres::{self, Access};

pub async fn run(args: StatusArgs, printer: &Printer) -> Result<Exit> {
    let fleet = Fleet::load(&args.fleet.fleet)?;
    let clients = fleet.select(&args.clients)?;
    let vercel = apply::prepare_client(&fleet)?;
    let mut rows = Vec::new();
    for client in clients {
        let name = client.config.name.clone();
        let next_window = match client.config.schedule.state(chrono::Utc::now()) {
            WindowState::Open => "open now".to_owned(),
            WindowState::Closed { next_open: Some(t) } => {
                t.format("%Y-%m-%d %H:%M UTC").to_string()
            }
            WindowState::Closed { next_open: None } => "none".to_owned(),
        };
        let mut last_change = None;
        if let Ok(url) = client.config.database.url.resolve()
            && let Ok(mut conn) = postgres::connect(&name, &url, Access::ReadOnly).await
        {
            last_change = record::history(&mut conn, 50)
                .await
                .ok()
                .and_then(|events| {
                    events
                        .into_iter()
                        .find(|e| e.step == "apply" && e.outcome != "started")
                })
                .map(|e| {
                    format!(
                        "{} {}",
                        e.at.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default(),
                        e.outcome
                    )
                });
            postgres::close(conn).await;
        }
        let row = match apply::prepare(&fleet, client, &vercel, Mode::Daemon, None, None, None)
            .await
        {
            Err(err) => {
                // A spent Vercel window is a wait, not an error.
                let phase = if err.rate_limited_until().is_some() {
                    crate::daemon::RATE_LIMITED
                } else {
                    "Error"
                };
                json!({"client": name, "phase": phase, "reason": err.to_string(), "nextWindow": next_window, "lastChange": last_change})
            }
            Ok(prepared) => {
                let plan = &prepared.plan;
                let (phase, reason) = if let Some(Hold::Failed { step, error, .. }) =
                    plan.holds.iter().find(|h| matches!(h, Hold::Failed { .. }))
                {
                    ("Failed", format!("{step}: {error}"))
                } else if plan.outcome() == Outcome::Blocked {
                    (
                        "Holding",
                        plan.blocks
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                } else if plan.outcome() == Outcome::Converged {
                    ("Converged", String::new())
                } else if !plan.holds.is_empty() {
                    (
                        "Holding",
                        plan.holds
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                } else {
                    (
                        "Pending",
                        plan.steps
                            .iter()
                            .filter(|s| !matches!(s.kind(), "preflight" | "record"))
                            .map(|s| s.kind())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                };
                let production = prepared.observed.code.production.clone();
                let current = prepared.observed.schema.current.as_ref();
                let target = &client.config.database.schema_version;
                // Up: the migrations still to run. Down: those a rollback would undo.
                let pending: Vec<String> = if current.is_none_or(|c| c < target) {
                    fleet.catalog.between(current, target)
                } else {
                    current.map_or_else(Vec::new, |c| fleet.catalog.between(Some(target), c))
                }
                .into_iter()
                .map(|m| m.version.to_string())
                .collect();
                json!({
                    "client": name,
                    "phase": phase,
                    "reason": reason,
                    "schema": prepared.observed.schema.current.as_ref().map(ToString::to_string),
                    "schemaTarget": target.to_string(),
                    "schemaPending": pending,
                    "deployment": production.as_ref().map(|d| d.id.clone()),
                    "sha": production.as_ref().and_then(|d| d.sha.clone()),
                    "envDrift": plan.changes.env.iter().filter(|c| c.drift).map(|c| c.key.clone()).collect::<Vec<_>>(),
                    "envPending": plan.changes.env.iter().map(|c| format!("{}{}", c.action.sign(), c.key)).collect::<Vec<_>>(),
                    "lastBackup": prepared.observed.schema.last_backup.as_ref().map(|b| b.id.clone()),
                    "lastChange": last_change,
                    "nextWindow": next_window,
                })
            }
        };
        rows.push(row);
    }
    match args.format {
        OutputFormat::Json => printer.out(serde_json::to_string_pretty(&json!({"clients": rows}))?),
        OutputFormat::Text => printer.out(table(&rows, args.clients.len() == 1)),
    }
    let failed = rows
        .iter()
        .any(|r| r["phase"] == "Failed" || r["phase"] == "Error");
    Ok(if failed { Exit::Error } else { Exit::Success })
}

fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "—".to_owned(),
        serde_json::Value::String(s) if s.is_empty() => "—".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON list of strings as `a, b`, or `none`.
fn list(value: &serde_json::Value) -> String {
    let items: Vec<&str> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn table(rows: &[serde_json::Value], detailed: bool) -> String {
    let mut out = format!(
        "{:<12} {:<10} {:<16} {:<14} {:<18} {}\n",
        "CLIENT", "PHASE", "SCHEMA", "CODE", "LAST CHANGE", "REASON / NEXT WINDOW"
    );
    for r in rows {
        let sha = r["sha"]
            .as_str()
            .map(|s| s.chars().take(12).collect::<String>())
            .unwrap_or_else(|| "—".to_owned());
        let reason = cell(&r["reason"]);
        let tail = if reason == "—" {
            format!("next window: {}", cell(&r["nextWindow"]))
        } else {
            reason
        };
        out.push_str(&format!(
            "{:<12} {:<10} {:<16} {:<14} {:<18} {}\n",
            cell(&r["client"]),
            cell(&r["phase"]),
            cell(&r["schema"]),
            sha,
            cell(&r["lastChange"]),
            tail
        ));
        if detailed {
            out.push_str(&format!(
                "  target schema {} (pending: {}), production {}, last backup {}, env drift {}, env pending {}\n",
                cell(&r["schemaTarget"]),
                list(&r["schemaPending"]),
                cell(&r["deployment"]),
                cell(&r["lastBackup"]),
                list(&r["envDrift"]),
                list(&r["envPending"])
            ));
        }
    }
    out
}
