//! `steward verify CLIENT [--expected-version V]`: the guide's verify-after-migration.

use anyhow::Result;

use super::support::{database_url, load_client, mark, pg};
use crate::cli::VerifyArgs;
use crate::exit::Exit;
use crate::migrations::Version;
use crate::output::Printer;
use crate::postgres::{self, Access};

pub async fn run(args: VerifyArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = &client.config.name;
    let url = database_url(&client)?;
    let expected: Option<Version> = args
        .expected_version
        .as_deref()
        .map(str::parse)
        .transpose()?;
    let mut conn = postgres::connect(name, &url, Access::ReadOnly)
        .await
        .map_err(pg)?;
    let report = postgres::verify(
        &mut conn,
        name,
        &fleet.catalog,
        &client.config.database,
        expected.as_ref(),
    )
    .await;
    postgres::close(conn).await;
    let report = report.map_err(pg)?;
    let mut out = format!("verify {name}\n");
    for check in &report.checks {
        out.push_str(&format!(
            "  {} {}: {}\n",
            mark(check.passed),
            check.name,
            check.detail
        ));
    }
    out.push_str(if report.passed() {
        "all checks passed\n"
    } else {
        "verification FAILED\n"
    });
    printer.out(out);
    Ok(if report.passed() {
        Exit::Success
    } else {
        Exit::Error
    })
}
