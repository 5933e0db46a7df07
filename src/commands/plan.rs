//! `steward plan`: observe (read-only) and show what would happen. Never writes: database
//! sessions are `default_transaction_read_only` and Vercel is only read.

use anyhow::{Context as _, Result};

use super::support::fleet_revision;
use crate::apply::{self, ApplyError};
use crate::cli::{PlanArgs, PlanFormat};
use crate::exit::Exit;
use crate::manifest::Fleet;
use crate::output::Printer;
use crate::plan::Mode;
use crate::plan::render::{self, Report, RunOutcome};

/// Plan the selected clients; errors per client are part of the report.
pub async fn report(fleet: &Fleet, names: &[String], mode: Mode) -> Result<Report> {
    let clients = fleet.select(names)?;
    let revision = fleet_revision(fleet);
    let mut report = Report {
        revision: revision.clone(),
        ..Report::default()
    };
    let vercel = match apply::prepare_client(fleet) {
        Ok(client) => client,
        Err(err) => {
            for client in clients {
                report
                    .errors
                    .push((client.config.name.clone(), err.to_string()));
            }
            return Ok(report);
        }
    };
    for client in clients {
        match apply::prepare(fleet, client, &vercel, mode, None, revision.clone()).await {
            Ok(prepared) => report.plans.push(prepared.plan),
            Err(err) => report
                .errors
                .push((client.config.name.clone(), explain(&err))),
        }
    }
    Ok(report)
}

fn explain(err: &ApplyError) -> String {
    err.to_string()
}

pub async fn run(args: PlanArgs, printer: &Printer) -> Result<Exit> {
    if args.changed_since.is_some() {
        anyhow::bail!(
            "--changed-since is not available in this build; plan the clients by name instead"
        );
    }
    let fleet = Fleet::load(&args.fleet.fleet)?;
    let report = report(&fleet, &args.clients, Mode::Operator).await?;
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
