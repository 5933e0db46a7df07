//! `steward backup CLIENT` and `steward backups CLIENT`.

use std::time::Instant;

use anyhow::Result;

use super::support::{actor, database_url, fleet_revision, load_client, pg};
use crate::apply::record::{self, Event, EventKind};
use crate::cli::ClientArgs;
use crate::exit::{Exit, Refused};
use crate::output::{Printer, table};
use crate::plan::IdentityObserved;
use crate::postgres::{self, backup};
use crate::progress::{self, Progress};

pub async fn take(args: ClientArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args)?;
    let name = &client.config.name;
    let url = database_url(&client)?;
    let (state, _) = postgres::observe(name, &url, &client.config.database)
        .await
        .map_err(pg)?;
    if state.identity != IdentityObserved::Matches {
        anyhow::bail!(Refused(format!(
            "client {name}: the database's identity {}; not backing up a database that may not be this client's (run `steward adopt {name}` if it is)",
            state.identity
        )));
    }
    let started = Instant::now();
    let progress = Progress::task(&format!("{name}: backing up"), printer.color());
    let taken = backup::take(name, &url, &fleet.backups_dir, state.current.as_ref()).await;
    progress.finish();
    let info = taken.map_err(pg)?;
    let mut conn = postgres::connect(name, &url, postgres::Access::ReadWrite)
        .await
        .map_err(pg)?;
    record::ensure_table(&mut conn).await?;
    let mut event = Event::new(name, "backup", EventKind::Manual, &actor());
    event.duration_ms = i64::try_from(started.elapsed().as_millis()).ok();
    event.versions = info.schema_version.iter().cloned().collect();
    event.detail = Some(format!("backup {} sha256 {}", info.id, info.sha256));
    event.fleet_revision = fleet_revision(&fleet);
    record::append(&mut conn, &event).await?;
    postgres::close(conn).await;
    printer.out(format!(
        "{name}: backup {} at schema {} ({} in {}, sha256 {}), checked readable\n  {}",
        info.id,
        info.schema_version.as_deref().unwrap_or("(empty)"),
        progress::bytes(info.size),
        progress::duration(started.elapsed()),
        &info.sha256[..16],
        fleet.backups_dir.join(name).join(&info.file).display()
    ));
    Ok(Exit::Success)
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
