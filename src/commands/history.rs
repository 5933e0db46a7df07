//! `steward history CLIENT`: the update records, newest first.

use anyhow::Result;

use super::support::{database_url, load_client, pg};
use crate::apply::record;
use crate::cli::{HistoryArgs, OutputFormat};
use crate::exit::Exit;
use crate::output::Printer;
use crate::postgres::{self, Access};

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
            let mut out = String::new();
            for e in &events {
                let at =
                    e.at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                let mut line = format!("{at}  {:<12} {:<12}", e.step, e.outcome);
                if let Some(ms) = e.duration_ms {
                    line.push_str(&format!(" {ms:>6} ms"));
                }
                if !e.versions.is_empty() {
                    line.push_str(&format!("  versions {}", e.versions.join(",")));
                }
                if !e.env_keys.is_empty() {
                    line.push_str(&format!("  env {}", e.env_keys.join(",")));
                }
                if let Some(d) = &e.deployment_id {
                    line.push_str(&format!("  deployment {d}"));
                }
                if let Some(h) = &e.plan_hash {
                    line.push_str(&format!("  plan {h}"));
                }
                if let Some(err) = &e.error {
                    line.push_str(&format!("\n    error: {err}"));
                }
                if let Some(detail) = &e.detail {
                    line.push_str(&format!("\n    {detail}"));
                }
                line.push_str(&format!("  by {}", e.actor));
                out.push_str(&line);
                out.push('\n');
            }
            printer.out(out);
        }
    }
    Ok(Exit::Success)
}
