//! `steward retry CLIENT`: clear the Failed state so the same release may run again (for a
//! cause outside the manifest, like a Vercel outage).

use anyhow::Result;

use super::support::{actor, database_url, load_client, pg};
use crate::apply::record::{self, Event, EventKind};
use crate::cli::ClientArgs;
use crate::exit::Exit;
use crate::output::Printer;
use crate::postgres::{self, Access};

pub async fn run(args: ClientArgs, printer: &Printer) -> Result<Exit> {
    let (_, client) = load_client(&args)?;
    let name = &client.config.name;
    let url = database_url(&client)?;
    let mut conn = postgres::connect(name, &url, Access::ReadWrite)
        .await
        .map_err(pg)?;
    let failure = record::last_failure(&mut conn).await?;
    let Some(failure) = failure else {
        postgres::close(conn).await;
        printer.out(format!("{name}: not in the Failed state; nothing to retry"));
        return Ok(Exit::Success);
    };
    record::ensure_table(&mut conn).await?;
    let mut e = Event::new(name, "apply", EventKind::Retry, &actor());
    e.plan_hash = Some(failure.plan_hash.clone());
    e.release = failure.release.clone();
    e.detail = Some(format!("retry after failure at {}", failure.step));
    record::append(&mut conn, &e).await?;
    // A retry is a new attempt: its start and outcome are told again.
    crate::notify::once::forget_attempt(name, &mut conn)
        .await
        .map_err(pg)?;
    postgres::close(conn).await;
    printer.out(format!(
        "{name}: Failed state cleared (plan {}); the next apply or daemon loop runs it again",
        failure.plan_hash
    ));
    Ok(Exit::Success)
}
