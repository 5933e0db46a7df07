//! `steward apply [CLIENT...] [--plan-hash H] [--yes]`: observe and plan each client once,
//! show the plans, ask (on a terminal, without --yes), then carry out the plans shown,
//! client by client.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};

use super::support::{actor, fleet_revision, flush_notifications, notifier, undo_lines};
use crate::apply::{self, ApplyError, ErrorClass, Outcome, Runner};
use crate::cli::ApplyArgs;
use crate::exit::{Exit, Refused};
use crate::manifest::Fleet;
use crate::notify::Message;
use crate::output::Printer;
use crate::plan::render::{self, RunOutcome};
use crate::plan::{Hold, Mode, Plan};
use crate::progress::{Progress, Summary};

pub async fn run(args: ApplyArgs, printer: &Printer) -> Result<Exit> {
    let fleet = Fleet::load(&args.fleet.fleet)?;
    let mode = Mode::Operator {
        approved: args.plan_hash.clone(),
        ignore_window: args.ignore_window,
        revert_outside_change: args.revert_outside_change,
    };
    // One look per client: the plan shown here is the one that runs (see
    // `apply::execute_prepared` for what is checked again under the lock).
    let (report, looks) = super::plan::prepare_all(&fleet, &args.clients, mode.clone()).await?;
    let mut looks: std::collections::BTreeMap<String, apply::Prepared> = looks
        .into_iter()
        .map(|p| (p.plan.client.clone(), p))
        .collect();
    printer.out(render::text(&report, printer.color()));
    let runnable = report.plans.iter().filter(|p| p.runnable()).count();
    // Plans that would run but for a hold: when nothing else can run, `apply` refuses,
    // and a dry run says the same.
    let held: Vec<&Plan> = report
        .plans
        .iter()
        .filter(|p| !p.steps.is_empty() && p.blocks.is_empty() && !p.holds.is_empty())
        .collect();
    let all_held = runnable == 0 && !held.is_empty();
    if args.dry_run {
        return Ok(match report.outcome() {
            RunOutcome::Invalid => Exit::Error,
            RunOutcome::Blocked => Exit::Refused,
            _ if all_held => Exit::Refused,
            _ => Exit::Success,
        });
    }
    if let Some(expected) = &args.plan_hash {
        let hashes: Vec<&str> = report
            .plans
            .iter()
            .filter(|p| !p.steps.is_empty())
            .map(|p| p.hash.as_str())
            .collect();
        if hashes.len() != 1 || hashes[0] != expected {
            bail!(Refused(format!(
                "--plan-hash {expected} does not match the plan computed now ({}); run `steward plan` again and review it",
                if hashes.is_empty() {
                    "nothing to do".to_owned()
                } else {
                    hashes.join(", ")
                }
            )));
        }
    }
    announce_scheduled(&fleet, &held).await;
    if runnable == 0 {
        if held.is_empty() {
            printer.note("nothing to apply");
        } else {
            // Each hold says what releases it: the command that approves, overrides or
            // retries.
            for plan in &held {
                for hold in &plan.holds {
                    printer.error(format!("{} not applied: {hold}", plan.client));
                }
            }
        }
        return Ok(if report.outcome() == RunOutcome::Blocked || all_held {
            Exit::Refused
        } else if report.errors.is_empty() {
            Exit::Success
        } else {
            Exit::Error
        });
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("refusing to apply without confirmation: pass --yes (stdin is not a terminal)");
        }
        eprint!("apply {runnable} client plan(s)? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            printer.note("not applied");
            return Ok(Exit::Success);
        }
    }
    let mut runner = Runner::new(actor(), mode);
    runner.revision = fleet_revision(&fleet);
    let progress = Progress::clients(runnable, "applying", printer.color());
    runner.on_step = Some(progress.on_step());
    let summary = Summary::default();
    let mut exit = Exit::Success;
    let notifier = notifier(&fleet);
    for plan in report.plans.iter().filter(|p| p.runnable()) {
        let client = fleet.client(&plan.client)?;
        notifier.send(Message::before_update(plan, runner.revision.clone()));
        let outcome = match looks.remove(&plan.client) {
            Some(shown) => {
                apply::execute_prepared(&runner, &fleet, client, shown, Some(&plan.hash)).await
            }
            None => apply::execute(&runner, &fleet, client, Some(&plan.hash)).await,
        };
        for message in announce(&plan.client, &outcome, runner.revision.as_ref()) {
            notifier.send(message);
        }
        exit = exit.worst(report_outcome(printer, &summary, &plan.client, outcome));
        progress.advance();
    }
    progress.finish();
    flush_notifications(&notifier).await;
    printer.out(summary.render());
    Ok(exit)
}

/// Plans held only by their maintenance window are announced to the clients (`scheduled`),
/// once per release whether the CLI or the daemon saw them first.
async fn announce_scheduled(fleet: &Fleet, held: &[&Plan]) {
    let waiting: Vec<&&Plan> = held
        .iter()
        .filter(|p| matches!(p.holds.as_slice(), [Hold::OutsideWindow { .. }]))
        .collect();
    if waiting.is_empty() {
        return;
    }
    let notifier = notifier(fleet);
    let revision = fleet_revision(fleet);
    for plan in waiting {
        if let [Hold::OutsideWindow { next_open, .. }] = plan.holds.as_slice() {
            notifier.send(Message::scheduled(plan, *next_open, revision.clone()));
        }
    }
    flush_notifications(&notifier).await;
}

/// What a terminal apply tells the fleet's webhooks once a client's run ended: the same
/// messages the daemon sends.
fn announce(
    name: &str,
    outcome: &Result<Outcome, ApplyError>,
    revision: Option<&String>,
) -> Vec<Message> {
    let revision = revision.cloned();
    match outcome {
        Ok(Outcome::Applied { plan, .. }) => vec![Message::after_update(plan, revision)],
        outcome => apply::request::failure_notices(name, outcome, revision),
    }
}

/// Record how one client's run ended in the summary; a failure or an interruption also
/// says at once what was undone and what to do. Returns the exit code it adds.
fn report_outcome(
    printer: &Printer,
    summary: &Summary,
    name: &str,
    outcome: Result<Outcome, ApplyError>,
) -> Exit {
    match outcome {
        Ok(Outcome::Applied { plan: p, .. }) => {
            summary.add(name, "applied", format!("plan {}", p.hash));
            Exit::Success
        }
        Ok(Outcome::Converged(_)) => {
            summary.add(name, "unchanged", "already converged");
            Exit::Success
        }
        Ok(Outcome::NotRun(p)) => {
            let why = p
                .holds
                .iter()
                .map(ToString::to_string)
                .chain(p.blocks.iter().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join("; ");
            summary.add(name, "not run", why);
            // Held or blocked under the lock: nothing ran, as when it was held before.
            Exit::Refused
        }
        Ok(Outcome::Interrupted { after, why, .. }) => {
            let text = format!(
                "interrupted: {why} after {after}; the next run continues from what is live"
            );
            printer.out(format!("{name}: {text}"));
            summary.add(name, "interrupted", text);
            Exit::Changes
        }
        Ok(Outcome::Failed {
            step,
            class,
            error,
            undo,
            undo_errors,
            record_errors,
            ..
        }) => {
            let mut text = format!("{name}: FAILED at {step}: {error}\n");
            for line in undo_lines(&undo, &undo_errors, &record_errors) {
                text.push_str(&format!("  {line}\n"));
            }
            text.push_str(&format!("  the client is now Failed: fix the cause and change the manifest, or `steward retry {name}`"));
            printer.out(text);
            summary.add(
                name,
                "FAILED",
                format!("at {step}; {} step(s) undone", undo.run.len()),
            );
            // A guard that refused mid-run is a refusal, as one before the run is.
            if class == ErrorClass::Refused {
                Exit::Refused
            } else {
                Exit::Error
            }
        }
        Err(err) => {
            printer.error(err.to_string());
            let refused = err.is_refusal();
            summary.add(
                name,
                if refused { "refused" } else { "error" },
                err.to_string(),
            );
            if refused { Exit::Refused } else { Exit::Error }
        }
    }
}
