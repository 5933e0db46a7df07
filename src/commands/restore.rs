//! `steward restore CLIENT --backup ID|latest --yes`: the guide's "restore from backup",
//! then re-check identity, report the restored version, and record what it undid.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::support::{actor, database_url, fleet_revision, load_client, pg};
use crate::cli::RestoreArgs;
use crate::exit::{Exit, Refused};
use crate::output::Printer;
use crate::postgres::{Actor, Session, backup};
use crate::progress::{self, Progress};

pub async fn run(args: RestoreArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = &client.config.name;
    let (info, file) = backup::find(name, &fleet.backups_dir, &args.backup).map_err(pg)?;
    if !args.yes {
        bail!(Refused(format!(
            "client {name}: restoring backup {} replaces the database's contents; run again with --yes to confirm",
            info.id
        )));
    }
    let url = database_url(&client)?;
    let mut session = Session::open(
        name,
        &url,
        client.config.database.identity,
        Duration::from_secs(30),
        false,
    )
    .await
    .map_err(pg)?;
    let who = actor();
    let revision = fleet_revision(&fleet);
    let act = Actor {
        name: &who,
        revision: revision.as_deref(),
    };
    let started = Instant::now();
    let progress = Progress::task(
        &format!(
            "{name}: restoring backup {} ({})",
            info.id,
            progress::bytes(info.size)
        ),
        printer.color(),
    );
    let restored = session
        .restore(
            &url,
            &file,
            client.config.database.identity,
            &fleet.catalog,
            act,
        )
        .await;
    progress.finish();
    let undone: Vec<String> = restored
        .map_err(pg)?
        .iter()
        .map(ToString::to_string)
        .collect();
    let current = crate::postgres::current_of(&session.latest_rows().await.map_err(pg)?);
    session.close().await;
    printer.out(format!(
        "{name}: restored backup {} ({}) in {}; schema now {}; identity re-checked{}",
        info.id,
        info.created_at.format("%Y-%m-%d %H:%M UTC"),
        progress::duration(started.elapsed()),
        current.map_or("(empty)".to_owned(), |v| v.to_string()),
        if undone.is_empty() {
            String::new()
        } else {
            format!("; marked rolled_back: {}", undone.join(", "))
        }
    ));
    Ok(Exit::Success)
}
