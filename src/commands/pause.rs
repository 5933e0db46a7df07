//! `steward pause CLIENT` / `steward unpause CLIENT`: the emergency stop. Vercel's pause
//! of the client's project makes every one of its deployments answer 503 until it is
//! unpaused (the guide's "if the database is corrupted: stop all application traffic");
//! each is recorded in the client's update records with the actor, and announced to the
//! fleet's webhooks.

use anyhow::{Context as _, Result};

use super::support::{actor, fleet_revision, flush_notifications, load_client, notifier};
use crate::apply::{self, record};
use crate::cli::ClientArgs;
use crate::exit::Exit;
use crate::manifest::{Client, Fleet};
use crate::output::Printer;
use crate::postgres::{self, Access};
use crate::vercel;

/// Whether a client's production traffic flows or is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Paused,
    Serving,
}

impl Traffic {
    /// The step name in the update records, and the verb in messages.
    pub fn step(self) -> &'static str {
        match self {
            Traffic::Paused => "pause",
            Traffic::Serving => "unpause",
        }
    }

    /// The change that puts this one back.
    pub fn undo(self) -> Traffic {
        match self {
            Traffic::Paused => Traffic::Serving,
            Traffic::Serving => Traffic::Paused,
        }
    }
}

pub async fn run(args: ClientArgs, traffic: Traffic, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args)?;
    set_traffic(&fleet, &client, traffic, printer).await?;
    Ok(Exit::Success)
}

/// Pause or unpause the client's project, confirm it, record it and say so. The record
/// comes after the change and is best effort: the database may be the very thing that is
/// broken, and traffic must stop anyway.
pub(super) async fn set_traffic(
    fleet: &Fleet,
    client: &Client,
    traffic: Traffic,
    printer: &Printer,
) -> Result<()> {
    let name = &client.config.name;
    let step = traffic.step();
    let context = || format!("client {name}: {step}");
    let api = apply::prepare_client(fleet).with_context(context)?;
    let project = api
        .project(&client.config.code.project)
        .await
        .map_err(apply::ApplyError::vercel(name))
        .with_context(context)?;
    vercel::set_paused(&api, &project.id, traffic == Traffic::Paused)
        .await
        .map_err(apply::ApplyError::vercel(name))
        .with_context(context)?;
    let detail = match traffic {
        Traffic::Paused => format!(
            "project {} paused: every deployment answers 503 until `steward unpause {name}`",
            project.name
        ),
        Traffic::Serving => format!("project {} unpaused: production serves again", project.name),
    };
    if let Err(err) = record_traffic(fleet, client, step, &detail).await {
        printer.warn(format!(
            "{name}: {step} done, but it could not be recorded in the update records: {err}"
        ));
    }
    // Announced on the `rollback` event, as the other changes made by hand are.
    let notifier = notifier(fleet);
    notifier.send(crate::notify::Message::manual(
        crate::manifest::NotifyEvent::Rollback,
        name,
        format!(
            "steward: {} `{name}` {detail} (by {})",
            if traffic == Traffic::Paused {
                "⏸️"
            } else {
                "▶️"
            },
            actor()
        ),
        fleet_revision(fleet),
    ));
    flush_notifications(&notifier).await;
    printer.out(format!("{name}: {detail}"));
    Ok(())
}

async fn record_traffic(fleet: &Fleet, client: &Client, step: &str, detail: &str) -> Result<()> {
    let name = &client.config.name;
    let url = client.config.database.url.resolve()?;
    let mut conn = postgres::connect(name, &url, Access::ReadWrite).await?;
    let mut event = record::Event::new(name, step, record::EventKind::Manual, &actor());
    event.detail = Some(detail.to_owned());
    event.fleet_revision = fleet_revision(fleet);
    let written = async {
        record::ensure_table(&mut conn).await?;
        record::append(&mut conn, &event).await
    }
    .await;
    postgres::close(conn).await;
    written?;
    Ok(())
}
