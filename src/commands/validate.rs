//! `steward validate`: check every manifest and print each problem with file:line:column.

use anyhow::Result;

use crate::cli::{OutputFormat, ValidateArgs};
use crate::exit::Exit;
use crate::manifest::{self, LoadOptions};
use crate::output::Printer;

pub fn run(args: ValidateArgs, printer: &Printer) -> Result<Exit> {
    let options = LoadOptions {
        require_secrets: args.require_secrets,
    };
    let loaded = manifest::load(&args.fleet.fleet, options);
    let errors = loaded.errors().count();
    let warnings = loaded.diagnostics.len() - errors;
    let clients = loaded.fleet.as_ref().map_or(0, |f| f.clients.len());
    match args.format {
        OutputFormat::Json => {
            let report = serde_json::json!({
                "valid": errors == 0,
                "clients": loaded.fleet.as_ref().map(|f| f.clients.keys().collect::<Vec<_>>()),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": loaded.diagnostics,
            });
            printer.out(serde_json::to_string_pretty(&report)?);
        }
        OutputFormat::Text => {
            for diagnostic in &loaded.diagnostics {
                printer.out(diagnostic.to_string());
            }
            let summary = if errors == 0 {
                format!(
                    "fleet {} is valid: {clients} clients, {warnings} warnings",
                    args.fleet.fleet.display()
                )
            } else {
                format!(
                    "fleet {} is invalid: {errors} errors, {warnings} warnings",
                    args.fleet.fleet.display()
                )
            };
            printer.note(summary);
        }
    }
    Ok(if errors == 0 {
        Exit::Success
    } else {
        Exit::Error
    })
}
