//! The one way a command that changes a client runs: build the request, then either show
//! its plan (`--dry-run`, in the plan renderers' formats) or run it through the executor,
//! print what each step did, tell the fleet's destinations, and map the outcome to an exit
//! code. Both paths plan through `apply::request`, so they refuse alike (exit 3).

use anyhow::{Result, bail};

use super::support::{actor, fleet_revision, flush_notifications, notifier, undo_lines};
use crate::apply::{self, ApplyError, ErrorClass, Outcome, Runner};
use crate::cli::{DryRunArgs, PlanFormat};
use crate::exit::{Exit, Refused};
use crate::manifest::{Client, Fleet};
use crate::output::Printer;
use crate::plan::render::{self, Report};
use crate::plan::request::Request;
use crate::plan::{Mode, Plan};
use crate::progress::Progress;

/// Show or run `request` on `client`.
pub async fn run(
    fleet: &Fleet,
    client: &Client,
    request: Request,
    preview: &DryRunArgs,
    printer: &Printer,
) -> Result<Exit> {
    let lock_timeout = Runner::new("", Mode::operator()).lock_timeout;
    run_locked(fleet, client, request, preview, lock_timeout, printer).await
}

/// [`run`], waiting up to `lock_timeout` for the client's lock.
pub async fn run_locked(
    fleet: &Fleet,
    client: &Client,
    request: Request,
    preview: &DryRunArgs,
    lock_timeout: std::time::Duration,
    printer: &Printer,
) -> Result<Exit> {
    if preview.dry_run {
        let plan = apply::request::plan(fleet, client, &request)
            .await
            .map_err(refusal)?;
        return show(fleet, plan, preview.format, printer);
    }
    let mut runner = Runner::new(actor(), Mode::operator());
    runner.lock_timeout = lock_timeout;
    runner.revision = fleet_revision(fleet);
    runner.on_step = Some(Progress::lines(printer.color()).on_step());
    // What the plan says of itself (a baseline's count, a backup taken first) is said
    // before its first step changes anything.
    runner.on_start = Some(std::sync::Arc::new(|plan: &Plan| {
        for note in &plan.notes {
            Printer::plain().out(format!("{}: {note}", plan.client));
        }
    }));
    let outcome = apply::request::execute(&runner, fleet, client, &request).await;
    let notifier = notifier(fleet);
    for message in apply::request::announce(
        &client.config.name,
        &outcome,
        &runner.actor,
        runner.revision.clone(),
    ) {
        notifier.send(message);
    }
    flush_notifications(&notifier).await;
    report(&client.config.name, outcome.map_err(refusal)?, printer)
}

/// The dry run: the plan in the chosen format; refused (exit 3, the same words on stderr
/// as the real run's) when it is blocked.
fn show(fleet: &Fleet, plan: Plan, format: PlanFormat, printer: &Printer) -> Result<Exit> {
    let refusal = (!plan.blocks.is_empty()).then(|| refused(&plan));
    let report = Report {
        plans: vec![plan],
        ..Report::default()
    };
    printer.out(match format {
        PlanFormat::Text => render::text(&report, printer.color()),
        PlanFormat::Markdown => render::markdown(&report, Some(&fleet.catalog)),
        PlanFormat::Json => {
            serde_json::to_string_pretty(&render::json(&report, Some(&fleet.catalog)))?
        }
    });
    match refusal {
        Some(err) => Err(err),
        None => Ok(Exit::Success),
    }
}

/// The refusal of a blocked plan, in the same words for the dry run and the real run.
fn refused(plan: &Plan) -> anyhow::Error {
    let why: Vec<String> = plan.blocks.iter().map(ToString::to_string).collect();
    anyhow::Error::new(Refused(format!(
        "client {}: {} refused: {}",
        plan.client,
        plan.command,
        why.join("; ")
    )))
}

/// A refusal is exit 3; anything else stays an error.
fn refusal(err: ApplyError) -> anyhow::Error {
    if err.is_refusal() {
        anyhow::Error::new(Refused(err.to_string()))
    } else {
        anyhow::Error::new(err)
    }
}

/// What the run did, in words, and its exit code.
fn report(name: &str, outcome: Outcome, printer: &Printer) -> Result<Exit> {
    match outcome {
        Outcome::Applied { said, .. } => {
            for line in said {
                printer.out(format!("{name}: {line}"));
            }
            Ok(Exit::Success)
        }
        Outcome::Converged(plan) => {
            for note in &plan.notes {
                printer.out(format!("{name}: {note}"));
            }
            Ok(Exit::Success)
        }
        Outcome::NotRun(plan) => Err(refused(&plan)),
        Outcome::Interrupted { after, why, .. } => {
            printer.out(format!(
                "{name}: interrupted: {why} after {after}; nothing was undone"
            ));
            Ok(Exit::Changes)
        }
        Outcome::Failed {
            plan,
            step,
            class,
            error,
            undo,
            undo_errors,
            record_errors,
        } => {
            let mut text = format!("{name}: {} FAILED at {step}: {error}", plan.command);
            for line in undo_lines(&undo, &undo_errors, &record_errors) {
                text.push_str(&format!("\n  {line}"));
            }
            if class == ErrorClass::Refused {
                bail!(Refused(text))
            }
            bail!(text)
        }
    }
}
