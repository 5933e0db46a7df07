//! `steward rollback CLIENT --code [--to DEPLOYMENT]`: production goes back now, by
//! Vercel's instant rollback (no rebuild), to the previous production deployment. A plan
//! like any change: guarded by production being what was observed, undone by promoting
//! it again.

use anyhow::{Result, bail};

use super::support::load_client;
use crate::cli::RollbackArgs;
use crate::exit::Exit;
use crate::output::Printer;
use crate::plan::request::Request;

pub async fn run(args: RollbackArgs, printer: &Printer) -> Result<Exit> {
    if !args.code {
        bail!(
            "say what to roll back: --code (production deployment). Schema rollbacks go through `steward migrate --to` or `steward restore`"
        );
    }
    let (fleet, client) = load_client(&args.target)?;
    let request = Request::RollbackCode {
        to: args.to.clone(),
    };
    let exit = super::change::run(&fleet, &client, request, &args.preview, printer).await?;
    if exit == Exit::Success && !args.preview.dry_run {
        printer.note(format!(
            "{}: pin spec.code.version to the live commit, or set spec.suspend: true, so steward does not roll forward again",
            client.config.name
        ));
    }
    Ok(exit)
}
