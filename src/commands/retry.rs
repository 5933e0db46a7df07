//! `steward retry CLIENT`: clear the Failed state so the same release may run again (for a
//! cause outside the manifest, like a Vercel outage).

use anyhow::Result;

use super::support::load_client;
use crate::cli::ChangeArgs;
use crate::exit::Exit;
use crate::output::Printer;
use crate::plan::request::Request;

pub async fn run(args: ChangeArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    super::change::run(&fleet, &client, Request::Retry, &args.preview, printer).await
}
