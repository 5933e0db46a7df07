//! `steward backup CLIENT` and `steward backups CLIENT`.

use anyhow::Result;

use super::support::{database_url, load_client, pg};
use crate::cli::ClientArgs;
use crate::exit::{Exit, Refused};
use crate::output::Printer;
use crate::plan::IdentityObserved;
use crate::postgres::{self, backup};

pub async fn take(args: ClientArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args)?;
    let name = &client.config.name;
    let url = database_url(&client)?;
    let (state, _) = postgres::observe(name, &url, &client.config.database)
        .await
        .map_err(pg)?;
    if state.identity != IdentityObserved::Matches {
        anyhow::bail!(Refused(format!(
            "client {name}: the database's identity does not match ({:?}); not backing up a database that may not be this client's",
            state.identity
        )));
    }
    let info = backup::take(name, &url, &fleet.backups_dir, state.current.as_ref())
        .await
        .map_err(pg)?;
    printer.out(format!(
        "{name}: backup {} at schema {} ({} bytes, sha256 {}), checked readable\n  {}",
        info.id,
        info.schema_version.as_deref().unwrap_or("(empty)"),
        info.size,
        &info.sha256[..16],
        fleet.backups_dir.join(name).join(&info.file).display()
    ));
    Ok(Exit::Success)
}

pub async fn list(args: ClientArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args)?;
    let name = &client.config.name;
    let backups = backup::list(name, &fleet.backups_dir)?;
    if backups.is_empty() {
        printer.out(format!(
            "{name}: no backups in {}",
            fleet.backups_dir.join(name).display()
        ));
        return Ok(Exit::Success);
    }
    let mut out = format!(
        "{:<26} {:<16} {:>12}  {}\n",
        "ID", "SCHEMA", "BYTES", "CREATED"
    );
    for b in backups {
        out.push_str(&format!(
            "{:<26} {:<16} {:>12}  {}\n",
            b.id,
            b.schema_version.as_deref().unwrap_or("(empty)"),
            b.size,
            b.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    printer.out(out);
    Ok(Exit::Success)
}
