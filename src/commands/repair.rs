//! `steward repair CLIENT --version V --mark applied|rolled-back`: the explicit way out
//! after a crash left an `in_progress` or `failed` row, recorded with who did it. Any
//! other row, and an edited migration marked applied, is refused (`postgres::repair`).

use std::time::Duration;

use anyhow::Result;

use super::support::{actor, database_url, fleet_revision, load_client, pg};
use crate::apply::record::{self, Event, EventKind};
use crate::cli::{RepairArgs, RepairMark};
use crate::exit::Exit;
use crate::migrations::Version;
use crate::output::Printer;
use crate::postgres::{Actor, Session, Status};

pub async fn run(args: RepairArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = &client.config.name;
    let version: Version = args.version.parse()?;
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
    let status = match args.mark {
        RepairMark::Applied => Status::Applied,
        RepairMark::RolledBack => Status::RolledBack,
    };
    let who = actor();
    let revision = fleet_revision(&fleet);
    let act = Actor {
        name: &who,
        revision: revision.as_deref(),
    };
    let was = session
        .repair(&fleet.catalog, &version, status, act)
        .await
        .map_err(pg)?;
    record::ensure_table(session.connection()).await?;
    let mut event = Event::new(name, "repair", EventKind::Manual, &who);
    event.versions = vec![version.to_string()];
    event.detail = Some(format!("{was} → {}", status.as_str()));
    event.fleet_revision = revision.clone();
    record::append(session.connection(), &event).await?;
    session.close().await;
    printer.out(format!(
        "{name}: {version} was `{was}`, now recorded `{}` by {who}",
        status.as_str()
    ));
    Ok(Exit::Success)
}
