//! `steward adopt CLIENT [--baseline VERSION]`: mark a database as this client's and,
//! for databases migrated by hand, record versions up to VERSION as applied.

use std::time::Duration;

use anyhow::{Result, bail};

use super::support::{actor, database_url, fleet_revision, load_client, pg};
use crate::cli::AdoptArgs;
use crate::exit::{Exit, Refused};
use crate::migrations::Version;
use crate::output::Printer;
use crate::postgres::{self, Session, Status};

pub async fn run(args: AdoptArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = &client.config.name;
    let url = database_url(&client)?;
    let mut session = Session::open(name, &url, None, Duration::from_secs(30), true)
        .await
        .map_err(pg)?;
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
    if let Some(baseline) = &args.baseline {
        let baseline: Version = baseline.parse()?;
        if !fleet.catalog.contains(&baseline) {
            bail!(
                "client {name}: baseline {baseline} is not in the migrations folder {}",
                fleet.catalog.dir.display()
            );
        }
        let rows = session.latest_rows().await.map_err(pg)?;
        // Agree with what the guide's process recorded, or refuse.
        for row in &rows {
            let below = row.version <= baseline;
            if below && row.status != Status::Applied.as_str() {
                bail!(Refused(format!(
                    "client {name}: system_versions says {} is `{}`, but --baseline {baseline} would record it as applied",
                    row.version, row.status
                )));
            }
            if !below && row.status == Status::Applied.as_str() {
                bail!(Refused(format!(
                    "client {name}: system_versions says {} is applied, which is above --baseline {baseline}",
                    row.version
                )));
            }
        }
        let revision = fleet_revision(&fleet);
        let who = actor();
        let act = postgres::Actor {
            name: &who,
            revision: revision.as_deref(),
        };
        let mut recorded = 0;
        for m in fleet
            .catalog
            .migrations
            .iter()
            .filter(|m| m.version <= baseline)
        {
            let has_checksum = rows
                .iter()
                .any(|r| r.version == m.version && r.checksum.is_some());
            if !has_checksum {
                session.record_baseline(m, act).await.map_err(pg)?;
                recorded += 1;
            }
        }
        printer.out(format!("{name}: baseline {baseline}: {recorded} version(s) recorded as applied, existing rows kept"));
    }
    session.close().await;
    Ok(Exit::Success)
}
