//! `steward migrate CLIENT [--to V] [--dry-run] [--rehearse]`: the guide's migration
//! runner, as a plan (backup first under `policy.backup: required`, then the run up or
//! down that `postgres::path` judges), shown by `--dry-run` and run by the executor.

use anyhow::{Result, bail};

use super::support::{database_url, load_client, pg};
use crate::apply;
use crate::cli::MigrateArgs;
use crate::exit::{Exit, Refused};
use crate::manifest::{Client, Fleet};
use crate::migrations::Version;
use crate::output::Printer;
use crate::plan::rehearsal;
use crate::plan::request::Request;
use crate::postgres;
use crate::secret::Secret;

pub async fn run(args: MigrateArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let target: Version = match &args.to {
        Some(text) => text.parse()?,
        None => client.config.database.schema_version.clone(),
    };
    if args.rehearse {
        if !fleet.catalog.contains(&target) {
            bail!(
                "client {}: version {target} is not in the migrations folder {}",
                client.config.name,
                fleet.catalog.dir.display()
            );
        }
        let url = database_url(&client)?;
        return rehearse(&fleet, &client, &url, &target, printer).await;
    }
    let request = Request::Migrate { to: target };
    super::change::run_locked(
        &fleet,
        &client,
        request,
        &args.preview,
        args.lock_timeout,
        printer,
    )
    .await
}

/// `--rehearse`: on a scratch copy of the latest backup, never on production. Exit 3
/// when the rehearsal failed or broke `policy.maxLockTime`, as a plan would be blocked.
async fn rehearse(
    fleet: &Fleet,
    client: &Client,
    url: &Secret,
    target: &Version,
    printer: &Printer,
) -> Result<Exit> {
    let name = &client.config.name;
    let (state, _) = postgres::observe(name, url, &client.config.database)
        .await
        .map_err(pg)?;
    if state.current.as_ref().is_some_and(|c| c >= target) {
        printer.out(format!(
            "{name}: nothing to rehearse: the database is at {}, the target {target}",
            state
                .current
                .as_ref()
                .map_or(String::new(), ToString::to_string)
        ));
        return Ok(Exit::Success);
    }
    let result =
        apply::rehearsal::rehearse_now(fleet, client, url, state.current.as_ref(), target).await;
    let rehearsal = match result {
        Ok(r) => r,
        Err(err) if err.is_refusal() => bail!(Refused(err.to_string())),
        Err(err) => return Err(err.into()),
    };
    let mut out = format!("{name}: {}\n", rehearsal.headline());
    for m in &rehearsal.migrations {
        out.push_str(&format!("  {m}\n"));
    }
    let blocks = rehearsal::blocks(&rehearsal, client.config.policy.max_lock_time);
    for block in &blocks {
        out.push_str(&format!("blocked: {block}\n"));
    }
    printer.out(out);
    Ok(if blocks.is_empty() {
        Exit::Success
    } else {
        Exit::Refused
    })
}
