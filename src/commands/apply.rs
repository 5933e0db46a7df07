//! `steward apply [CLIENT...] [--plan-hash H] [--yes]`: recompute the plan, show it, ask
//! (on a terminal, without --yes), then carry it out client by client.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Result, bail};

use super::support::{actor, fleet_revision};
use crate::apply::{self, Outcome, Runner, StepEvent};
use crate::cli::ApplyArgs;
use crate::exit::{Exit, Refused};
use crate::manifest::Fleet;
use crate::output::{Printer, Style};
use crate::plan::render::{self, RunOutcome};
use crate::plan::{Mode, Step};

pub async fn run(args: ApplyArgs, printer: &Printer) -> Result<Exit> {
    let fleet = Fleet::load(&args.fleet.fleet)?;
    let report = super::plan::report(&fleet, &args.clients, Mode::Operator).await?;
    printer.out(render::text(&report, printer.color()));
    if args.dry_run {
        return Ok(match report.outcome() {
            RunOutcome::Invalid => Exit::Error,
            RunOutcome::Blocked => Exit::Refused,
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
    let runnable = report.plans.iter().filter(|p| p.runnable()).count();
    if runnable == 0 {
        printer.note("nothing to apply");
        return Ok(if report.outcome() == RunOutcome::Blocked {
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
    let mut runner = Runner::new(actor(), Mode::Operator);
    runner.revision = fleet_revision(&fleet);
    let color = printer.color();
    runner.on_step = Some(Arc::new(
        move |client: &str, step: &Step, event: StepEvent| {
            let line = match event {
                StepEvent::Started => return,
                StepEvent::Succeeded(took) => format!(
                    "{client}: {} {step} ({} ms)",
                    crate::output::paint(color, "✓", Style::Green),
                    took.as_millis()
                ),
                StepEvent::Failed(err) => format!(
                    "{client}: {} {step}: {err}",
                    crate::output::paint(color, "✗", Style::Red)
                ),
                StepEvent::Undone => format!("{client}: ↶ undone: {}", step.kind()),
            };
            eprintln!("{line}");
        },
    ));
    let mut exit = Exit::Success;
    for plan in report.plans.iter().filter(|p| p.runnable()) {
        let client = fleet.client(&plan.client)?;
        match apply::execute(&runner, &fleet, client, Some(&plan.hash)).await {
            Ok(Outcome::Applied(p)) => {
                printer.out(format!("{}: applied (plan {})", p.client, p.hash))
            }
            Ok(Outcome::Converged(p)) => printer.out(format!("{}: already converged", p.client)),
            Ok(Outcome::NotRun(p)) => printer.out(format!(
                "{}: not run: {}",
                p.client,
                p.holds
                    .iter()
                    .map(ToString::to_string)
                    .chain(p.blocks.iter().map(ToString::to_string))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            Ok(Outcome::Interrupted { plan, after, why }) => {
                printer.out(format!(
                    "{}: interrupted: {why} after {after}; the next run continues from what is live",
                    plan.client
                ));
                exit = exit.worst(Exit::Changes);
            }
            Ok(Outcome::Failed {
                plan,
                step,
                error,
                undo,
                undo_errors,
            }) => {
                let mut text = format!("{}: FAILED at {step}: {error}\n", plan.client);
                for (kind, _) in &undo.run {
                    text.push_str(&format!("  undone: {kind}\n"));
                }
                for (kind, why) in &undo.kept {
                    text.push_str(&format!("  KEPT: {kind} — {why}\n"));
                }
                for err in &undo_errors {
                    text.push_str(&format!("  undo failed: {err}\n"));
                }
                text.push_str(&format!("  the client is now Failed: fix the cause and change the manifest, or `steward retry {}`", plan.client));
                printer.out(text);
                exit = exit.worst(Exit::Error);
            }
            Err(err) if err.is_refusal() => {
                printer.error(err.to_string());
                exit = exit.worst(Exit::Refused);
            }
            Err(err) => {
                printer.error(err.to_string());
                exit = exit.worst(Exit::Error);
            }
        }
    }
    Ok(exit)
}
