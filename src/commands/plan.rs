//! `steward plan`: observe (read-only) and show what would happen. Never writes: database
//! sessions are `default_transaction_read_only` and Vercel is only read.

use anyhow::{Context as _, Result};

use super::support::fleet_revision;
use crate::apply::{self, ApplyError, Prepared};
use crate::cli::{PlanArgs, PlanFormat};
use crate::exit::Exit;
use crate::manifest::Fleet;
use crate::manifest::changed::changed_since;
use crate::output::Printer;
use crate::plan::Mode;
use crate::plan::render::{self, Report, RunOutcome};

/// Plan the selected clients; errors per client are part of the report.
pub async fn report(fleet: &Fleet, names: &[String], mode: Mode) -> Result<Report> {
    Ok(prepare_all(fleet, names, mode).await?.0)
}

/// [`report`], keeping each client's look (observation, plan, Vercel client): `apply`
/// runs the plans it showed from them.
pub async fn prepare_all(
    fleet: &Fleet,
    names: &[String],
    mode: Mode,
) -> Result<(Report, Vec<Prepared>)> {
    let clients = fleet.select(names)?;
    let revision = fleet_revision(fleet);
    let mut report = Report {
        revision: revision.clone(),
        ..Report::default()
    };
    let mut looks = Vec::new();
    let vercel = match apply::prepare_client(fleet) {
        Ok(client) => client,
        Err(err) => {
            for client in clients {
                report
                    .errors
                    .push((client.config.name.clone(), err.to_string()));
            }
            return Ok((report, Vec::new()));
        }
    };
    for client in clients {
        match apply::prepare(
            fleet,
            client,
            &vercel,
            mode.clone(),
            None,
            revision.clone(),
            None,
        )
        .await
        {
            Ok(prepared) => {
                report.plans.push(prepared.plan.clone());
                looks.push(prepared);
            }
            Err(err) => report
                .errors
                .push((client.config.name.clone(), explain(&err))),
        }
    }
    Ok((report, looks))
}

/// Plan only what a change since `rev` touches (a PR's plan): deleted and renamed
/// manifests become notes; an edited migration that already existed is an error.
async fn changed_report(fleet: &Fleet, rev: &str, only: &[String]) -> Result<Report> {
    let changes = changed_since(fleet, rev)?;
    let names: Vec<String> = changes
        .clients
        .keys()
        .filter(|name| only.is_empty() || only.contains(name))
        .cloned()
        .collect();
    let mut report = if names.is_empty() {
        Report {
            revision: fleet_revision(fleet),
            ..Report::default()
        }
    } else {
        report(fleet, &names, Mode::operator()).await?
    };
    report.notes = changes.notes();
    for (name, why) in &changes.clients {
        if names.contains(name) {
            report
                .notes
                .push(format!("client `{name}` planned: {}", why.join("; ")));
        }
    }
    for file in &changes.edited_migrations {
        report.errors.push((
            file.clone(),
            format!(
                "this migration existed at {} and was edited or removed; applied migrations are immutable (their checksum is recorded in each database): restore it and add a new migration instead",
                &changes.base[..changes.base.len().min(12)]
            ),
        ));
    }
    Ok(report)
}

fn explain(err: &ApplyError) -> String {
    err.to_string()
}

pub async fn run(args: PlanArgs, printer: &Printer) -> Result<Exit> {
    let fleet = Fleet::load(&args.fleet.fleet)?;
    let report = match &args.changed_since {
        None => report(&fleet, &args.clients, Mode::operator()).await?,
        Some(rev) => changed_report(&fleet, rev, &args.clients).await?,
    };
    let text = match args.format {
        PlanFormat::Text => render::text(&report, printer.color()),
        PlanFormat::Markdown => render::markdown(&report, Some(&fleet.catalog)),
        PlanFormat::Json => {
            serde_json::to_string_pretty(&render::json(&report, Some(&fleet.catalog)))?
        }
    };
    if let Some(out) = &args.out {
        let plain = match args.format {
            PlanFormat::Text => render::text(&report, false),
            _ => text.clone(),
        };
        std::fs::write(out, plain).with_context(|| format!("cannot write {}", out.display()))?;
    }
    printer.out(text);
    Ok(match report.outcome() {
        RunOutcome::Invalid => Exit::Error,
        RunOutcome::Blocked => Exit::Refused,
        RunOutcome::Changes if args.detailed_exitcode => Exit::Changes,
        _ => Exit::Success,
    })
}
