//! `steward restore CLIENT --backup ID|latest --yes`: the guide's "restore from backup",
//! then re-check identity, report the restored version, and record what it undid.

use std::time::Duration;

use anyhow::{Result, bail};

use super::support::{actor, database_url, fleet_revision, load_client, pg};
use crate::cli::RestoreArgs;
use crate::exit::{Exit, Refused};
use crate::output::Printer;
use crate::postgres::{Actor, Session, Status, backup};

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
    let before = session.latest_rows().await.map_err(pg)?;
    backup::restore(name, &url, &file).await.map_err(pg)?;
    session
        .check_identity(client.config.database.identity)
        .await
        .map_err(pg)?;
    postgres_ensure(&mut session).await?;
    let after = session.latest_rows().await.map_err(pg)?;
    let applied = |rows: &[crate::postgres::Row], v: &crate::migrations::Version| {
        rows.iter()
            .any(|r| &r.version == v && r.status == Status::Applied.as_str())
    };
    let who = actor();
    let revision = fleet_revision(&fleet);
    let act = Actor {
        name: &who,
        revision: revision.as_deref(),
    };
    let mut undone = Vec::new();
    for row in before
        .iter()
        .filter(|r| r.status == Status::Applied.as_str() && !applied(&after, &r.version))
    {
        let name_of = fleet.catalog.get(&row.version).map(|m| m.name.clone());
        session
            .mark(&row.version, Status::RolledBack, name_of.as_deref(), act)
            .await
            .map_err(pg)?;
        undone.push(row.version.to_string());
    }
    let current = crate::postgres::current_of(&after);
    session.close().await;
    printer.out(format!(
        "{name}: restored backup {} ({}); schema now {}; identity re-checked{}",
        info.id,
        info.created_at.format("%Y-%m-%d %H:%M UTC"),
        current.map_or("(empty)".to_owned(), |v| v.to_string()),
        if undone.is_empty() {
            String::new()
        } else {
            format!("; marked rolled_back: {}", undone.join(", "))
        }
    ));
    Ok(Exit::Success)
}

async fn postgres_ensure(session: &mut Session) -> Result<()> {
    let client = session.client().to_owned();
    crate::postgres::ensure_table(session.connection(), &client)
        .await
        .map_err(pg)
}
