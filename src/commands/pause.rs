//! `steward pause CLIENT` / `steward unpause CLIENT`: the emergency stop. Vercel's pause
//! of the client's project makes every one of its deployments answer 503 until it is
//! unpaused (the guide's "if the database is corrupted: stop all application traffic").
//! Each is a plan (`pause`'s undo is `unpause`) recorded in the client's update records
//! with the actor, and announced to the fleet's webhooks. Neither waits for the client's
//! lock or needs its database: the record is written when the database answers.

use anyhow::Result;

use super::support::load_client;
use crate::cli::ChangeArgs;
use crate::exit::Exit;
use crate::output::Printer;
use crate::plan::request::Request;

pub async fn run(args: ChangeArgs, pause: bool, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let request = if pause {
        Request::Pause
    } else {
        Request::Unpause
    };
    super::change::run(&fleet, &client, request, &args.preview, printer).await
}
