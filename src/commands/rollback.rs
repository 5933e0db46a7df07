//! `steward rollback CLIENT --code [--to DEPLOYMENT]`: production goes back now, by
//! Vercel's instant rollback (no rebuild), to the previous production deployment.

use anyhow::{Result, bail};

use super::support::{actor, fleet_revision, flush_notifications, load_client, notifier};
use crate::apply::{self, record};
use crate::cli::RollbackArgs;
use crate::exit::Exit;
use crate::output::Printer;
use crate::postgres::{self, Access};
use crate::vercel;

pub async fn run(args: RollbackArgs, printer: &Printer) -> Result<Exit> {
    if !args.code {
        bail!(
            "say what to roll back: --code (production deployment). Schema rollbacks go through `steward migrate --to` or `steward restore`"
        );
    }
    let (fleet, client) = load_client(&args.target)?;
    let name = &client.config.name;
    let api = apply::prepare_client(&fleet)?;
    let project = api
        .project(&client.config.code.project)
        .await
        .map_err(apply::ApplyError::vercel(name))?;
    let current = project.production().map(|d| d.id.clone());
    let target = match &args.to {
        Some(id) => id.clone(),
        None => {
            // The previous production deployment: the newest rollback candidate.
            let from = project
                .last_alias_request
                .as_ref()
                .and_then(|r| r.from_deployment_id.clone());
            match from.filter(|f| !f.is_empty() && Some(f) != current.as_ref()) {
                Some(id) => id,
                None => bail!(
                    "client {name}: no previous production deployment is known; pass --to DEPLOYMENT"
                ),
            }
        }
    };
    vercel::rollback(&api, &project.id, &target)
        .await
        .map_err(apply::ApplyError::vercel(name))?;
    if let Ok(url) = client.config.database.url.resolve()
        && let Ok(mut conn) = postgres::connect(name, &url, Access::ReadWrite).await
    {
        let _ = record::ensure_table(&mut conn).await;
        let mut e = record::Event::new(name, "rollback", record::EventKind::Manual, &actor());
        e.deployment_id = Some(target.clone());
        e.detail = Some(format!(
            "production rolled back from {} to {target}",
            current.as_deref().unwrap_or("(none)")
        ));
        let _ = record::append(&mut conn, &e).await;
        postgres::close(conn).await;
    }
    let notifier = notifier(&fleet);
    notifier.send(crate::notify::Message::manual(
        crate::manifest::NotifyEvent::Rollback,
        name,
        format!(
            "steward: ↩️ `{name}` production rolled back by hand to {target} (was {}) by {}",
            current.as_deref().unwrap_or("(none)"),
            actor()
        ),
        fleet_revision(&fleet),
    ));
    flush_notifications(&notifier).await;
    printer.out(format!(
        "{name}: production rolled back to {target} (was {}); Vercel turned auto-assign of production domains off until the next promote.\n  Pin spec.code.version to the live commit, or set spec.suspend: true, so steward does not roll forward again.",
        current.as_deref().unwrap_or("(none)")
    ));
    Ok(Exit::Success)
}
