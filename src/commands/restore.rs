//! `steward restore CLIENT --backup ID|latest --yes [--pause-traffic]`: the guide's
//! "restore from backup", as a plan: the backup is checked (its client, its SHA-256, the
//! identity inside the archive) before anything changes, and again right before it is
//! read; the update records survive the restore and it records itself. With
//! `--pause-traffic` the plan is pause, restore, verify, unpause, and the pause's undo
//! lets traffic through again when a later step fails.

use anyhow::{Result, bail};

use super::support::load_client;
use crate::cli::RestoreArgs;
use crate::exit::{Exit, Refused};
use crate::output::Printer;
use crate::plan::request::Request;

pub async fn run(args: RestoreArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = &client.config.name;
    if !args.yes && !args.preview.dry_run {
        bail!(Refused(format!(
            "client {name}: restoring backup {} replaces the database's contents; run again with --yes to confirm (or --dry-run to see the plan)",
            args.backup
        )));
    }
    let request = Request::Restore {
        backup: args.backup.clone(),
        pause_traffic: args.pause_traffic,
    };
    super::change::run(&fleet, &client, request, &args.preview, printer).await
}
