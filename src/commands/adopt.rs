//! `steward adopt CLIENT [--baseline VERSION] [--take-over-promotion]`: mark a database
//! as this client's and, for databases migrated by hand, record versions up to VERSION as
//! applied once the database shows it (`postgres::baseline`). A plan run by the executor
//! (`plan::request`): the dry run shows the same steps and refuses alike.
//!
//! Adopting also settles who promotes: a Vercel project that auto-assigns its production
//! domains puts every push live by itself, so the plan is refused (before anything is
//! written) unless `--take-over-promotion` turns that off, or `policy.takeOverPromotion`
//! lets the first converge plan do it.

use anyhow::Result;

use super::support::load_client;
use crate::cli::AdoptArgs;
use crate::exit::Exit;
use crate::output::Printer;
use crate::plan::request::Request;

pub async fn run(args: AdoptArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let request = Request::Adopt {
        baseline: args.baseline.as_deref().map(str::parse).transpose()?,
        take_over_promotion: args.take_over_promotion,
    };
    super::change::run(&fleet, &client, request, &args.preview, printer).await
}
