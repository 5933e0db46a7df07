//! `steward preflight CLIENT`: the guide's validate-before-update, as a list of checks.
//! Exit 0 when every check passes, 3 when one refuses.

use anyhow::Result;

use super::support::{load_client, mark};
use crate::cli::ClientArgs;
use crate::exit::Exit;
use crate::manifest::{BackupPolicy, Client, DriftPolicy};
use crate::output::Printer;
use crate::plan::{self, IdentityObserved, drift};
use crate::postgres::{self, SchemaState, backup};

pub async fn run(args: ClientArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args)?;
    let name = client.config.name.clone();
    let mut checks: Vec<(String, bool, String)> = vec![(
        "config valid".to_owned(),
        true,
        format!("{}", client.file.display()),
    )];
    let url = client.config.database.url.resolve();
    checks.push((
        "database URL set".to_owned(),
        url.is_ok(),
        format!("env {}", client.config.database.url.env),
    ));
    if let Ok(url) = url {
        match postgres::observe(&name, &url, &client.config.database).await {
            Err(err) => checks.push(("database reachable".to_owned(), false, err.to_string())),
            Ok((state, _)) => {
                checks.push((
                    "database reachable".to_owned(),
                    true,
                    "connected (read-only session)".to_owned(),
                ));
                let (ok, detail) = match &state.identity {
                    IdentityObserved::Matches => (true, format!("adopted by {name}")),
                    IdentityObserved::NotAdopted => {
                        (false, format!("not adopted: run `steward adopt {name}`"))
                    }
                    IdentityObserved::OtherClient(o) => (false, format!("belongs to client `{o}`")),
                    IdentityObserved::PinnedMismatch { pinned, found } => {
                        (false, format!("identity {found}, manifest pins {pinned}"))
                    }
                };
                checks.push(("identity matches".to_owned(), ok, detail));
                // The same judge as plan and the migration runner, in the same words.
                let observed = state.to_observed();
                let blocks = plan::row_blocks(
                    &name,
                    &fleet.catalog,
                    &observed.applied,
                    &observed.unfinished,
                );
                let said = |keep: fn(&plan::Block) -> bool, fine: &str| {
                    let found: Vec<String> = blocks
                        .iter()
                        .filter(|b| keep(b))
                        .map(ToString::to_string)
                        .collect();
                    if found.is_empty() {
                        (true, fine.to_owned())
                    } else {
                        (false, found.join("; "))
                    }
                };
                let (ok, detail) = said(|b| matches!(b, plan::Block::Unfinished { .. }), "none");
                checks.push(("no interrupted migration".to_owned(), ok, detail));
                let (ok, detail) = said(
                    |b| matches!(b, plan::Block::ChecksumMismatch { .. }),
                    "checksums match",
                );
                checks.push(("applied migrations unchanged".to_owned(), ok, detail));
                let (ok, detail) = said(
                    |b| matches!(b, plan::Block::UnknownVersion { .. }),
                    "all present",
                );
                checks.push(("applied versions on disk".to_owned(), ok, detail));
                checks.push(schema_as_recorded(&client, &state));
                if client.config.policy.backup == BackupPolicy::Required {
                    let backups = backup::list(&name, &fleet.backups_dir)?;
                    let current = state.current.as_ref().map(ToString::to_string);
                    let found = backups.iter().find(|b| b.schema_version == current);
                    checks.push((
                        "backup of the current version".to_owned(),
                        found.is_some(),
                        match found {
                            Some(b) => format!("{} ({} bytes)", b.id, b.size),
                            None => format!(
                                "none at {}: run `steward backup {name}`",
                                current.as_deref().unwrap_or("(empty schema)")
                            ),
                        },
                    ));
                }
            }
        }
    }
    checks.push(promotion_check(&fleet, &client).await);
    let passed = checks.iter().all(|(_, ok, _)| *ok);
    let mut out = format!("preflight {name}\n");
    for (check, ok, detail) in &checks {
        out.push_str(&format!("  {} {check}: {detail}\n", mark(*ok)));
    }
    out.push_str(if passed {
        "ready to update\n"
    } else {
        "not ready: fix the failed checks first\n"
    });
    printer.out(out);
    Ok(if passed { Exit::Success } else { Exit::Refused })
}

/// Only steward promotes: the project does not put every push live by itself, or the
/// policy lets the first plan take that over.
async fn promotion_check(
    fleet: &crate::manifest::Fleet,
    client: &Client,
) -> (String, bool, String) {
    let name = &client.config.name;
    let check = "production promoted by steward only".to_owned();
    let observed = match crate::apply::prepare_client(fleet) {
        Ok(api) => crate::vercel::observe(&api, &client.config.code.project)
            .await
            .map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    match observed {
        Err(err) => (
            check,
            false,
            format!("the Vercel project could not be read: {err}"),
        ),
        Ok(o) if !o.code.auto_promote => (
            check,
            true,
            "auto-assignment of production domains is off".to_owned(),
        ),
        Ok(_) if client.config.policy.take_over_promotion => (
            check,
            true,
            "auto-assignment is on; the next plan turns it off (policy.takeOverPromotion)"
                .to_owned(),
        ),
        Ok(_) => (check, false, plan::promotion::risk(name)),
    }
}

/// The live schema is the one recorded after the last run; under `policy.drift: warn` a
/// difference is shown but passes.
fn schema_as_recorded(client: &Client, state: &SchemaState) -> (String, bool, String) {
    let name = &client.config.name;
    let changes = drift::changes(state.drift.as_ref());
    let detail = if !state.has_reference {
        format!("no reference recorded yet (`steward drift accept {name}` records one)")
    } else if changes.is_empty() {
        "matches the schema recorded after the last run".to_owned()
    } else {
        format!(
            "changed outside steward: {}; `steward drift {name}`, then put it back or `steward drift accept {name}`",
            changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let passed = changes.is_empty() || client.config.policy.drift == DriftPolicy::Warn;
    ("schema as recorded".to_owned(), passed, detail)
}
