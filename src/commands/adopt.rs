//! `steward adopt CLIENT [--baseline VERSION]`: mark a database as this client's and,
//! for databases migrated by hand, record versions up to VERSION as applied once the
//! database shows it (`postgres::baseline`), saying how many before it does.
//!
//! Adopting also settles who promotes: a Vercel project that auto-assigns its production
//! domains puts every push live by itself, so adopt refuses it (before writing anything)
//! unless `--take-over-promotion` turns that off, or `policy.takeOverPromotion` lets the
//! first plan do it.

use std::time::Duration;

use anyhow::{Result, bail};

use super::support::{actor, database_url, fleet_revision, load_client, pg};
use crate::apply::{self, record};
use crate::cli::AdoptArgs;
use crate::exit::{Exit, Refused};
use crate::manifest::Client;
use crate::migrations::Version;
use crate::output::Printer;
use crate::plan::promotion;
use crate::postgres::{self, Session, drift::Reason};
use crate::vercel;

pub async fn run(args: AdoptArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = &client.config.name;
    let url = database_url(&client)?;
    let baseline: Option<Version> = args.baseline.as_deref().map(str::parse).transpose()?;
    let promotion = read_promotion(&fleet, &client, args.take_over_promotion, printer).await?;
    if promotion.as_ref().is_some_and(|p| p.code.auto_promote)
        && !args.take_over_promotion
        && !client.config.policy.take_over_promotion
    {
        bail!(Refused(format!("client {name}: {}", promotion::risk(name))));
    }
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
    if args.take_over_promotion
        && let Some(project) = &promotion
    {
        take_over(&fleet, &client, project, &mut session, printer).await?;
    }
    session.close().await;
    Ok(Exit::Success)
}

/// The project's promotion setting and production, from one read. A Vercel that cannot
/// be reached, or is not configured here (no token in this environment), does not stop
/// adopting the database: the first plan checks it again. Taking over promotion needs it.
async fn read_promotion(
    fleet: &crate::manifest::Fleet,
    client: &Client,
    take_over: bool,
    printer: &Printer,
) -> Result<Option<vercel::Observation>> {
    let name = &client.config.name;
    let api = match apply::prepare_client(fleet) {
        Ok(api) => api,
        Err(err) if !take_over => {
            printer.warn(format!(
                "{name}: the project's promotion setting could not be read ({err}); `steward plan {name}` checks it"
            ));
            return Ok(None);
        }
        Err(err) => return Err(err.into()),
    };
    match vercel::observe(&api, &client.config.code.project).await {
        Ok(observation) => Ok(Some(observation)),
        Err(err) if take_over => {
            bail!("client {name}: cannot take over promotion: the project could not be read: {err}")
        }
        Err(err) => {
            printer.warn(format!(
                "{name}: the project's promotion setting could not be read ({err}); `steward plan {name}` checks it"
            ));
            Ok(None)
        }
    }
}

/// Turn auto-assignment off and record it with its undo, and the production found then
/// as the one steward answers for (what an outside change is judged against).
async fn take_over(
    fleet: &crate::manifest::Fleet,
    client: &Client,
    observation: &vercel::Observation,
    session: &mut Session,
    printer: &Printer,
) -> Result<()> {
    let name = &client.config.name;
    let was_on = observation.code.auto_promote;
    if was_on {
        let api = apply::prepare_client(fleet)?;
        vercel::set_auto_promote(&api, &observation.project.id, false)
            .await
            .map_err(apply::ApplyError::vercel(name))?;
    }
    let production = observation.code.production.as_ref();
    let conn = session.connection();
    record::ensure_table(conn).await?;
    // The production found becomes steward's to answer for only when steward has none on
    // record: taking over again never adopts a change made outside steward.
    let recorded: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM steward_events WHERE {})",
        postgres::PRODUCTION_RECORDS
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(record::RecordError::from)?;
    let mut e = record::Event::new(name, "promotion", record::EventKind::Manual, &actor());
    e.deployment_id = production.filter(|_| !recorded).map(|d| d.id.clone());
    e.detail = Some(if was_on {
        "take over promotion: auto-assignment of production domains turned off (was on); undo: turn it back on (autoAssignCustomDomains: true)".to_owned()
    } else {
        "take over promotion: auto-assignment of production domains was already off".to_owned()
    });
    record::append(conn, &e).await?;
    printer.out(format!(
        "{name}: promotion taken over: {}; a push to the production branch now builds staged, and steward promotes{}",
        if was_on {
            "auto-assignment of production domains turned off"
        } else {
            "auto-assignment of production domains was already off"
        },
        production.map_or(String::new(), |d| format!(
            " (production now: {})",
            d.sha.as_deref().unwrap_or(&d.id)
        ))
    ));
    Ok(())
}
