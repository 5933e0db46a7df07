//! `steward migrate CLIENT [--to V] [--dry-run] [--rehearse]`: the guide's migration runner.

use anyhow::{Result, bail};

use super::support::{actor, database_url, fleet_revision, load_client, pg};
use crate::apply;
use crate::apply::record::{self, Event, EventKind};
use crate::cli::MigrateArgs;
use crate::exit::{Exit, Refused};
use crate::manifest::{BackupPolicy, Client, DestructivePolicy, Fleet};
use crate::migrations::{Version, lint, summarize};
use crate::output::Printer;
use crate::plan::rehearsal;
use crate::postgres::{self, Actor, Direction, RunPath, Session, path};
use crate::secret::Secret;

pub async fn run(args: MigrateArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = client.config.name.clone();
    let target: Version = match &args.to {
        Some(text) => text.parse()?,
        None => client.config.database.schema_version.clone(),
    };
    if !fleet.catalog.contains(&target) {
        bail!(
            "client {name}: version {target} is not in the migrations folder {}",
            fleet.catalog.dir.display()
        );
    }
    let url = database_url(&client)?;

    if args.dry_run {
        // Read-only: observe, then judge the same rows with the same functions as the real
        // run, so a refusal here is the refusal there. Touches nothing.
        let (state, _) = postgres::observe(&name, &url, &client.config.database)
            .await
            .map_err(pg)?;
        postgres::require_identity(&name, &state.identity).map_err(pg)?;
        let path = path::towards(&name, &fleet.catalog, &state.rows, &target).map_err(pg)?;
        refuse_destructive(&client, &path)?;
        let mut out = dry_run(&name, &path, &target);
        if backs_up_first(&client, &path) {
            out.push_str("-- a backup is taken first (policy.backup: required)\n");
        }
        printer.out(out);
        return Ok(Exit::Success);
    }

    if args.rehearse {
        return rehearse(&fleet, &client, &url, &target, printer).await;
    }

    let mut session = Session::open(
        &name,
        &url,
        client.config.database.identity,
        args.lock_timeout,
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

    // An early return drops the session, which releases the lock.
    let rows = session.latest_rows().await.map_err(pg)?;
    let path = path::towards(&name, &fleet.catalog, &rows, &target).map_err(pg)?;
    refuse_destructive(&client, &path)?;
    // The guide's "backup taken" comes before any migration, by hand or not.
    let backup = if backs_up_first(&client, &path) {
        let current = postgres::current_of(&rows);
        Some(
            postgres::backup::take(&name, &url, &fleet.backups_dir, current.as_ref())
                .await
                .map_err(pg)?,
        )
    } else {
        None
    };
    let report = session.run(&path, act).await;
    let recorded = record_run(&mut session, &name, &path, &report, backup.as_ref(), act).await;
    session.close().await;
    let report = report.map_err(pg)?;
    recorded?;
    if let Some(info) = &backup {
        printer.note(format!("{name}: backup {} taken first", info.id));
    }

    if report.versions.is_empty() {
        printer.out(format!("{name}: up to date at {target}"));
    } else {
        printer.out(format!(
            "{name}: {} {} migration(s) in {} ms: {}; schema now {target}",
            match path.direction {
                Direction::Up => "applied",
                Direction::Down => "rolled back",
            },
            report.versions.len(),
            report.elapsed.as_millis(),
            summarize(&report.versions)
        ));
    }
    Ok(Exit::Success)
}

/// `policy.backup: required` holds for a manual run too: anything to run means a backup.
fn backs_up_first(client: &Client, path: &RunPath<'_>) -> bool {
    client.config.policy.backup == BackupPolicy::Required && !path.migrations.is_empty()
}

/// A manual run is an update like any other: it leaves an update record, failed or not.
async fn record_run(
    session: &mut Session,
    name: &str,
    path: &RunPath<'_>,
    report: &Result<postgres::MigrateReport, postgres::PgError>,
    backup: Option<&postgres::backup::BackupInfo>,
    actor: Actor<'_>,
) -> Result<()> {
    if path.migrations.is_empty() {
        return Ok(());
    }
    let kind = if report.is_ok() {
        EventKind::Manual
    } else {
        EventKind::Failed
    };
    let mut event = Event::new(name, "migrate", kind, actor.name);
    event.fleet_revision = actor.revision.map(str::to_owned);
    event.versions = path.versions().iter().map(ToString::to_string).collect();
    event.detail = Some(format!(
        "{} to {}{}",
        match path.direction {
            Direction::Up => "up",
            Direction::Down => "down",
        },
        path.to
            .as_ref()
            .map_or("(none)".to_owned(), ToString::to_string),
        backup.map_or(String::new(), |b| format!("; backup {} taken first", b.id))
    ));
    if let Err(err) = report {
        event.error = Some(err.to_string());
    }
    record::ensure_table(session.connection()).await?;
    record::append(session.connection(), &event).await?;
    Ok(())
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

/// Under `policy.destructive: deny`, refuse a run with destructive SQL: going up, what
/// the new migrations do; going down, what undoing them loses.
fn refuse_destructive(client: &Client, path: &RunPath<'_>) -> Result<()> {
    if client.config.policy.destructive != DestructivePolicy::Deny {
        return Ok(());
    }
    let findings: Vec<String> = path
        .migrations
        .iter()
        .flat_map(|m| match path.direction {
            Direction::Up => lint::lint(m),
            Direction::Down => lint::lint_down(m),
        })
        .filter(lint::Finding::is_destructive)
        .map(|f| f.to_string())
        .collect();
    if findings.is_empty() {
        return Ok(());
    }
    bail!(Refused(format!(
        "client {}: destructive statements under policy.destructive: deny:\n  {}\nset policy.destructive: allow to run them",
        client.config.name,
        findings.join("\n  ")
    )))
}

/// What a dry run prints: each script that would run, with its lint findings.
fn dry_run(name: &str, path: &RunPath<'_>, target: &Version) -> String {
    let from = path
        .from
        .as_ref()
        .map_or("(none)".to_owned(), ToString::to_string);
    if path.migrations.is_empty() {
        return format!("{name}: up to date at {target}; nothing to run\n");
    }
    let mut out = match path.direction {
        Direction::Up => format!(
            "{name}: {} migration(s) would run, {from} → {target}\n",
            path.migrations.len()
        ),
        Direction::Down => format!(
            "{name}: {} migration(s) would roll back, {from} → {target}\n",
            path.migrations.len()
        ),
    };
    for m in &path.migrations {
        let script = path.direction.script(m);
        let alone = if path.direction.transactional(m) {
            ""
        } else {
            " (no-transaction)"
        };
        out.push_str(&format!(
            "\n-- {}{alone}\n{}\n",
            script.path.display(),
            script.sql.trim_end()
        ));
        let findings = match path.direction {
            Direction::Up => lint::lint(m),
            Direction::Down => lint::lint_down(m),
        };
        for finding in findings {
            out.push_str(&format!("-- lint: {finding}\n"));
        }
    }
    out
}
