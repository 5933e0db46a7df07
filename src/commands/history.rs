//! `steward history CLIENT`: the update records, newest first.

use anyhow::Result;

use super::support::{database_url, load_client, pg};
use crate::apply::record::{self, Event};
use crate::cli::{HistoryArgs, OutputFormat};
use crate::exit::Exit;
use crate::output::{Printer, table};
use crate::postgres::{self, Access};
use crate::progress;

pub async fn run(args: HistoryArgs, printer: &Printer) -> Result<Exit> {
    let (_, client) = load_client(&args.target)?;
    let name = &client.config.name;
    let url = database_url(&client)?;
    let mut conn = postgres::connect(name, &url, Access::ReadOnly)
        .await
        .map_err(pg)?;
    let events = record::history(&mut conn, args.limit).await?;
    postgres::close(conn).await;
    match args.format {
        OutputFormat::Json => printer.out(serde_json::to_string_pretty(&events)?),
        OutputFormat::Text => {
            if events.is_empty() {
                printer.out(format!("{name}: no update records yet"));
                return Ok(Exit::Success);
            }
            let rows: Vec<Vec<String>> = events.iter().map(row).collect();
            let out = table::render(&["AT", "STEP", "OUTCOME", "TOOK", "BY", "DETAIL"], &rows);
            printer.out(out);
        }
    }
    Ok(Exit::Success)
}

/// One record as table cells; the detail holds what changed, or the error.
fn row(e: &Event) -> Vec<String> {
    let mut detail = Vec::new();
    if let Some(err) = &e.error {
        detail.push(format!("error: {err}"));
    }
    if let Some(text) = &e.detail {
        detail.push(text.clone());
    }
    if !e.versions.is_empty() {
        detail.push(format!("versions {}", e.versions.join(", ")));
    }
    if !e.env_keys.is_empty() {
        detail.push(format!("env {}", e.env_keys.join(" ")));
    }
    if let Some(d) = &e.deployment_id {
        detail.push(format!("deployment {d}"));
    }
    if let Some(h) = &e.plan_hash {
        detail.push(format!("plan {h}"));
    }
    vec![
        e.at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default(),
        e.step.clone(),
        e.outcome.replace('_', " "),
        e.duration_ms.map_or_else(String::new, |ms| {
            progress::duration(std::time::Duration::from_millis(
                u64::try_from(ms).unwrap_or(0),
            ))
        }),
        e.actor.clone(),
        detail.join("; "),
    ]
}
