//! `steward adopt CLIENT [--baseline VERSION]`: mark a database as this client's and,
//! for databases migrated by hand, record versions up to VERSION as applied once the
//! database shows it (`postgres::baseline`), saying how many before it does.

use std::time::Duration;

use anyhow::{Result, bail};

use super::support::{actor, database_url, fleet_revision, load_client, pg};
use crate::cli::AdoptArgs;
use crate::exit::{Exit, Refused};
use crate::migrations::Version;
use crate::output::Printer;
use crate::postgres::{self, Session, drift::Reason};

pub async fn run(args: AdoptArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = &client.config.name;
    let url = database_url(&client)?;
    let baseline: Option<Version> = args.baseline.as_deref().map(str::parse).transpose()?;
    let mut session = Session::open(name, &url, None, Duration::from_secs(30), true)
        .await
        .map_err(pg)?;
    // Judge the baseline before writing anything, the identity included: a refused adopt
    // leaves the database as it found it.
    let checked = match &baseline {
        Some(baseline) => Some(
            session
                .check_baseline(&fleet.catalog, baseline)
                .await
                .map_err(pg)?,
        ),
        None => None,
    };
    let identity = postgres::adopt(session.connection(), name, &actor())
        .await
        .map_err(pg)?;
    if let Some(pinned) = client.config.database.identity
        && pinned != identity.id
    {
        bail!(Refused(format!(
            "client {name}: the database's identity is {}, but the manifest pins {pinned}",
            identity.id
        )));
    }
    printer.out(format!(
        "{name}: database adopted, identity {}",
        identity.id
    ));
    if let Some(checked) = checked {
        printer.out(format!("{name}: {checked}"));
        let revision = fleet_revision(&fleet);
        let who = actor();
        let act = postgres::Actor {
            name: &who,
            revision: revision.as_deref(),
        };
        session
            .record_baseline(&fleet.catalog, &checked, act)
            .await
            .map_err(pg)?;
        printer.out(format!(
            "{name}: baseline {}: {} version(s) recorded as applied",
            checked.version,
            checked.record.len()
        ));
    }
    // The schema as adopted is the reference drift is measured against from now on.
    let who = actor();
    let current = session.current_version().await.map_err(pg)?;
    session
        .record_schema(
            current.as_ref(),
            Reason::Adopt,
            postgres::Actor {
                name: &who,
                revision: None,
            },
        )
        .await
        .map_err(pg)?;
    session.close().await;
    Ok(Exit::Success)
}
