//! `steward backup CLIENT` and `steward backups CLIENT`.

use anyhow::Result;

use super::support::{load_client, pg};
use crate::cli::{ChangeArgs, ClientArgs};
use crate::exit::Exit;
use crate::output::{Printer, table};
use crate::plan::request::Request;
use crate::postgres::backup;
use crate::progress;

pub async fn take(args: ChangeArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    super::change::run(&fleet, &client, Request::Backup, &args.preview, printer).await
}

pub async fn list(args: ClientArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args)?;
    let name = &client.config.name;
    backup::sync(name, &fleet.backups_dir).await.map_err(pg)?;
    let backups = backup::list(name, &fleet.backups_dir)?;
    if backups.is_empty() {
        printer.out(format!(
            "{name}: no backups in {}",
            fleet.backups_dir.join(name).display()
        ));
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = backups
        .iter()
        .map(|b| {
            vec![
                b.id.clone(),
                b.schema_version.as_deref().unwrap_or("(empty)").to_owned(),
                progress::bytes(b.size),
                b.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ]
        })
        .collect();
    printer.out(table::render(&["ID", "SCHEMA", "SIZE", "CREATED"], &rows));
    Ok(Exit::Success)
}
