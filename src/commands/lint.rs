//! `steward lint`: every migration's findings with file:line. Exit 1 when any `.up.sql`
//! has a destructive or unreadable statement, or any migration file has transaction
//! control steward cannot run (hazards are warnings).

use anyhow::Result;

use crate::cli::{LintArgs, OutputFormat};
use crate::exit::Exit;
use crate::manifest::Fleet;
use crate::migrations::lint::{FindingKind, lint_catalog};
use crate::output::Printer;

pub fn run(args: LintArgs, printer: &Printer) -> Result<Exit> {
    let fleet = Fleet::load(&args.fleet.fleet)?;
    let findings = lint_catalog(&fleet.catalog);
    let blocking = findings
        .iter()
        .filter(|f| f.kind != FindingKind::Hazard)
        .count();
    match args.format {
        OutputFormat::Json => {
            let list: Vec<_> = findings
                .iter()
                .map(|f| serde_json::json!({"file": f.file, "line": f.line, "kind": format!("{:?}", f.kind).to_lowercase(), "rule": f.rule, "message": f.message}))
                .collect();
            printer.out(serde_json::to_string_pretty(
                &serde_json::json!({"findings": list, "blocking": blocking}),
            )?);
        }
        OutputFormat::Text => {
            for finding in &findings {
                printer.out(finding.to_string());
            }
            printer.note(format!(
                "{} migrations linted: {} findings, {blocking} blocking",
                fleet.catalog.migrations.len(),
                findings.len()
            ));
        }
    }
    Ok(if blocking == 0 {
        Exit::Success
    } else {
        Exit::Error
    })
}
