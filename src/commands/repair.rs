//! `steward repair CLIENT --version V --mark applied|rolled-back`: the explicit way out
//! after a crash left an `in_progress` or `failed` row, recorded with who did it. Any
//! other row, and an edited migration marked applied, is refused (`postgres::repair`).

use anyhow::Result;

use super::support::load_client;
use crate::cli::{RepairArgs, RepairMark};
use crate::exit::Exit;
use crate::output::Printer;
use crate::plan::request::{Request, RowMark};

pub async fn run(args: RepairArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let request = Request::Repair {
        version: args.version.parse()?,
        mark: match args.mark {
            RepairMark::Applied => RowMark::Applied,
            RepairMark::RolledBack => RowMark::RolledBack,
        },
    };
    super::change::run(&fleet, &client, request, &args.preview, printer).await
}
