//! `steward restore CLIENT --backup ID|latest --yes`: the guide's "restore from backup".
//! The backup is checked (its client, its SHA-256, the identity inside the archive) before
//! anything is written; the update records survive the restore and it records itself.
//! With `--pause-traffic` the client's traffic is stopped for the restore (its Vercel
//! project paused), the restored database verified, and traffic let through again, also
//! when the restore fails: the pause's undo runs on every path.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::pause::{Traffic, set_traffic};
use super::support::{
    actor, database_url, fleet_revision, flush_notifications, load_client, notifier, pg,
};
use crate::apply::record::{self, Event, EventKind};
use crate::cli::RestoreArgs;
use crate::exit::{Exit, Refused};
use crate::manifest::{Client, Fleet};
use crate::output::Printer;
use crate::postgres::backup::BackupInfo;
use crate::postgres::{self, Actor, Session, backup};
use crate::progress::{self, Progress};

pub async fn run(args: RestoreArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = &client.config.name;
    backup::sync(name, &fleet.backups_dir).await.map_err(pg)?;
    let (info, file) = backup::find(name, &fleet.backups_dir, &args.backup).map_err(pg)?;
    if !args.yes {
        bail!(Refused(format!(
            "client {name}: restoring backup {} replaces the database's contents; run again with --yes to confirm",
            info.id
        )));
    }
    if !args.pause_traffic {
        return restore(&fleet, &client, &info, &file, printer).await;
    }
    set_traffic(&fleet, &client, Traffic::Paused, printer).await?;
    let restored = async {
        restore(&fleet, &client, &info, &file, printer).await?;
        verify(&fleet, &client, printer).await
    }
    .await;
    let resumed = set_traffic(&fleet, &client, Traffic::Paused.undo(), printer).await;
    match (restored, resumed) {
        (restored, Ok(())) => restored,
        (Ok(_), Err(err)) => Err(err.context(format!(
            "client {name}: restored, but traffic is still stopped; run `steward unpause {name}`"
        ))),
        (Err(err), Err(unpause)) => {
            // The restore's error decides the exit code; the stuck pause must still be seen.
            printer.error(format!(
                "client {name}: traffic is still stopped: unpausing after the failed restore failed too ({unpause:#}); run `steward unpause {name}`"
            ));
            Err(err)
        }
    }
}

/// The restored database passes the client's verify checks, or the restore failed.
async fn verify(fleet: &Fleet, client: &Client, printer: &Printer) -> Result<Exit> {
    let name = &client.config.name;
    let (passed, out) = super::verify::check(
        fleet,
        client,
        None,
        &format!("verify {name} after the restore"),
    )
    .await?;
    printer.out(out.trim_end());
    if !passed {
        bail!("client {name}: the restored database failed verification");
    }
    Ok(Exit::Success)
}

async fn restore(
    fleet: &Fleet,
    client: &Client,
    info: &BackupInfo,
    file: &std::path::Path,
    printer: &Printer,
) -> Result<Exit> {
    let name = &client.config.name;
    backup::check(name, &fleet.backups_dir, info, file)
        .await
        .map_err(pg)?;
    let url = database_url(client)?;
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
    let revision = fleet_revision(fleet);
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
            file,
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
    let current = postgres::current_of(&session.latest_rows().await.map_err(pg)?);
    record::ensure_table(session.connection()).await?;
    let mut event = Event::new(name, "restore", EventKind::Manual, &who);
    event.duration_ms = i64::try_from(started.elapsed().as_millis()).ok();
    event.versions = undone.clone();
    event.detail = Some(format!(
        "backup {} taken {}; schema now {}",
        info.id,
        info.created_at.format("%Y-%m-%d %H:%M UTC"),
        current
            .as_ref()
            .map_or("(empty)".to_owned(), ToString::to_string)
    ));
    event.fleet_revision = revision.clone();
    record::append(session.connection(), &event).await?;
    session.close().await;
    let notifier = notifier(fleet);
    notifier.send(crate::notify::Message::manual(
        crate::manifest::NotifyEvent::Rollback,
        name,
        format!(
            "steward: ↩️ `{name}` database restored by hand from backup {} (taken {}) by {who}; schema now {}",
            info.id,
            info.created_at.format("%Y-%m-%d %H:%M UTC"),
            current.as_ref().map_or("(empty)".to_owned(), ToString::to_string)
        ),
        revision.clone(),
    ));
    flush_notifications(&notifier).await;
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
