//! `steward drift CLIENT`: how the live schema differs from the one recorded after the
//! last run. `steward drift [--fleet]`: which clients differ from the others at the same
//! schema version. `steward drift accept CLIENT`: record the live schema as the reference.
//! Exit 0 when nothing differs, 2 when something does.

use anyhow::Result;
use futures::StreamExt as _;
use serde_json::json;

use super::support::{database_url, load_client, pg};
use crate::cli::{ChangeArgs, ClientArgs, DriftAction, DriftArgs, FleetArgs, OutputFormat};
use crate::exit::Exit;
use crate::manifest::Fleet;
use crate::output::Printer;
use crate::plan::drift::{self, VersionGroup};
use crate::plan::request::Request;
use crate::postgres;

/// Databases looked at at once by `drift --fleet`.
const CONCURRENCY: usize = 8;

pub async fn run(args: DriftArgs, printer: &Printer) -> Result<Exit> {
    let fleet = FleetArgs {
        fleet: args.fleet_dir(),
    };
    match (args.action, args.client) {
        (Some(DriftAction::Accept(target)), _) => accept(target, printer).await,
        (None, Some(client)) => one(ClientArgs { client, fleet }, args.format, printer).await,
        (None, None) => fleet_wide(&fleet, args.format, printer).await,
    }
}

async fn one(args: ClientArgs, format: OutputFormat, printer: &Printer) -> Result<Exit> {
    let (_, client) = load_client(&args)?;
    let name = &client.config.name;
    let url = database_url(&client)?;
    let (state, _) = postgres::observe(name, &url, &client.config.database)
        .await
        .map_err(pg)?;
    let changes = drift::changes(state.drift.as_ref());
    if format == OutputFormat::Json {
        printer.out(serde_json::to_string_pretty(&json!({
            "client": name,
            "reference": state.has_reference,
            "drift": state.drift,
        }))?);
    } else if !state.has_reference {
        printer.out(format!(
            "{name}: no schema reference recorded yet (one is recorded after every migrate, restore or adopt); `steward drift accept {name}` records the live schema now"
        ));
    } else if let Some(d) = &state.drift {
        let mut out = format!(
            "{name}: the live schema differs from the one recorded at {} by {} on {}:\n",
            d.recorded_version.as_deref().unwrap_or("(no version)"),
            d.recorded_by,
            d.recorded_at.format("%Y-%m-%d %H:%M UTC")
        );
        for change in &d.changes {
            out.push_str(&format!("  {change}\n"));
        }
        out.push_str(&format!(
            "put it back, or review it and run `steward drift accept {name}` (policy.drift: {})\n",
            match client.config.policy.drift {
                crate::manifest::DriftPolicy::Block => "block, so plans are blocked until then",
                crate::manifest::DriftPolicy::Warn => "warn",
            }
        ));
        printer.out(out);
    } else {
        printer.out(format!(
            "{name}: the live schema matches the one recorded after the last run"
        ));
    }
    Ok(if changes.is_empty() {
        Exit::Success
    } else {
        Exit::Changes
    })
}

/// Record the live schema as the reference: a plan whose one step's guard checks that the
/// drift is still exactly what was shown, recorded with who accepted what.
async fn accept(args: ChangeArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    super::change::run(
        &fleet,
        &client,
        Request::DriftAccept,
        &args.preview,
        printer,
    )
    .await
}

/// Every client, grouped by schema version; within a version, the clients whose schema
/// differs from the most common one, and how.
async fn fleet_wide(args: &FleetArgs, format: OutputFormat, printer: &Printer) -> Result<Exit> {
    let fleet = Fleet::load(&args.fleet)?;
    let looks: Vec<_> = futures::stream::iter(fleet.clients.values())
        .map(|client| async move {
            let name = client.config.name.clone();
            let looked = async {
                let url = database_url(client)?;
                postgres::drift::look(&name, &url).await.map_err(pg)
            }
            .await;
            (name, looked)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    for (name, looked) in looks {
        match looked {
            Ok((version, schema)) => seen.push((name, version.map(|v| v.to_string()), schema)),
            Err(err) => errors.push((name, format!("{err:#}"))),
        }
    }
    errors.sort();
    let groups = drift::compare_fleet(seen);
    if format == OutputFormat::Json {
        printer.out(serde_json::to_string_pretty(&json!({
            "versions": groups,
            "errors": errors.iter().map(|(c, e)| json!({"client": c, "error": e})).collect::<Vec<_>>(),
        }))?);
    } else {
        printer.out(fleet_text(&groups, &errors));
    }
    let differs = groups.iter().any(|g| !g.outliers.is_empty());
    let exit = if differs {
        Exit::Changes
    } else {
        Exit::Success
    };
    Ok(if errors.is_empty() {
        exit
    } else {
        exit.worst(Exit::Error)
    })
}

fn fleet_text(groups: &[VersionGroup], errors: &[(String, String)]) -> String {
    let mut out = String::new();
    for group in groups {
        let count = group.alike.len()
            + group
                .outliers
                .iter()
                .map(|o| o.clients.len())
                .sum::<usize>();
        out.push_str(&format!(
            "{}: {count} client(s)\n",
            group.version.as_deref().unwrap_or("(no version)")
        ));
        if group.outliers.is_empty() {
            out.push_str(&format!("  same schema: {}\n", group.alike.join(", ")));
            continue;
        }
        let reference = group.alike.join(", ");
        if group.majority {
            out.push_str(&format!("  same schema: {reference}\n"));
        } else {
            out.push_str(&format!(
                "  no majority; compared with the schema of {reference}\n"
            ));
        }
        for outlier in &group.outliers {
            out.push_str(&format!(
                "  {} differ{} from {reference}:\n",
                outlier.clients.join(", "),
                if outlier.clients.len() == 1 { "s" } else { "" }
            ));
            for change in &outlier.changes {
                out.push_str(&format!("    {change}\n"));
            }
        }
    }
    for (client, error) in errors {
        out.push_str(&format!("{client}: error: {error}\n"));
    }
    out
}
