//! `steward verify CLIENT [--expected-version V]`: the guide's verify-after-migration.

use anyhow::Result;

use super::support::{database_url, load_client, mark, pg};
use crate::cli::VerifyArgs;
use crate::exit::Exit;
use crate::manifest::{Client, Fleet};
use crate::migrations::Version;
use crate::output::Printer;
use crate::postgres::{self, Access};

pub async fn run(args: VerifyArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let expected: Option<Version> = args
        .expected_version
        .as_deref()
        .map(str::parse)
        .transpose()?;
    let name = &client.config.name;
    let (passed, mut out) = check(
        &fleet,
        &client,
        expected.as_ref(),
        &format!("verify {name}"),
    )
    .await?;
    out.push_str(if passed {
        "all checks passed\n"
    } else {
        "verification FAILED\n"
    });
    printer.out(out);
    Ok(if passed { Exit::Success } else { Exit::Error })
}

/// Run the client's verify checks on a read-only connection: whether all passed, and a
/// line per check under `heading`.
pub async fn check(
    fleet: &Fleet,
    client: &Client,
    expected: Option<&Version>,
    heading: &str,
) -> Result<(bool, String)> {
    let name = &client.config.name;
    let url = database_url(client)?;
    let mut conn = postgres::connect(name, &url, Access::ReadOnly)
        .await
        .map_err(pg)?;
    let report = postgres::verify(
        &mut conn,
        name,
        &fleet.catalog,
        &client.config.database,
        expected,
    )
    .await;
    postgres::close(conn).await;
    let report = report.map_err(pg)?;
    let mut out = format!("{heading}\n");
    for check in &report.checks {
        out.push_str(&format!(
            "  {} {}: {}\n",
            mark(check.passed),
            check.name,
            check.detail
        ));
    }
    Ok((report.passed(), out))
}
