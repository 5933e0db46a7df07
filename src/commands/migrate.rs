//! `steward migrate CLIENT [--to V] [--dry-run] [--rehearse]`: the guide's migration runner.

use anyhow::{Result, bail};

use super::support::{actor, database_url, fleet_revision, load_client, pg};
use crate::cli::MigrateArgs;
use crate::exit::{Exit, Refused};
use crate::manifest::DestructivePolicy;
use crate::migrations::{Version, lint};
use crate::output::Printer;
use crate::postgres::{self, Actor, Session};

pub async fn run(args: MigrateArgs, printer: &Printer) -> Result<Exit> {
    let (fleet, client) = load_client(&args.target)?;
    let name = client.config.name.clone();
    let target: Version = match &args.to {
        Some(text) => text.parse()?,
        None => client.config.database.schema_version.clone(),
    };
    if !fleet.catalog.contains(&target) {
        bail!(
            "client {name}: version {target} is not in the migrations folder {}",
            fleet.catalog.dir.display()
        );
    }
    let url = database_url(&client)?;

    if args.dry_run {
        // Read-only: observe, then print what would run. Touches nothing.
        let (state, _) = postgres::observe(&name, &url, &client.config.database)
            .await
            .map_err(pg)?;
        let current = state.current.clone();
        let mut out = String::new();
        if current.as_ref() == Some(&target) {
            out.push_str(&format!("{name}: up to date at {target}; nothing to run\n"));
        } else if current.as_ref().is_none_or(|c| c < &target) {
            let pending = fleet.catalog.between(current.as_ref(), &target);
            out.push_str(&format!(
                "{name}: {} migration(s) would run, {} → {target}\n",
                pending.len(),
                current.map_or("(none)".to_owned(), |v| v.to_string())
            ));
            for m in pending {
                out.push_str(&format!(
                    "\n-- {}{}\n{}\n",
                    m.up.path.display(),
                    if m.no_transaction {
                        " (no-transaction)"
                    } else {
                        ""
                    },
                    m.up.sql.trim_end()
                ));
                for finding in lint::lint(m) {
                    out.push_str(&format!("-- lint: {finding}\n"));
                }
            }
        } else {
            out.push_str(&format!(
                "{name}: would roll back from {} to {target}\n",
                current.map_or("(none)".to_owned(), |v| v.to_string())
            ));
        }
        printer.out(out);
        return Ok(Exit::Success);
    }

    let mut session = Session::open(
        &name,
        &url,
        client.config.database.identity,
        args.lock_timeout,
        false,
    )
    .await
    .map_err(pg)?;
    let current = session.current_version().await.map_err(pg)?;
    let who = actor();
    let revision = fleet_revision(&fleet);
    let act = Actor {
        name: &who,
        revision: revision.as_deref(),
    };

    if args.rehearse {
        let rehearsal = session
            .rehearse(&fleet.catalog, &target)
            .await
            .map_err(pg)?;
        session.close().await;
        let mut out = format!(
            "{name}: rehearsal ran {} migration(s) and rolled back; nothing changed\n",
            rehearsal.timings.len()
        );
        for (version, took) in rehearsal.timings {
            out.push_str(&format!("  {version}: {} ms\n", took.as_millis()));
        }
        for (version, why) in rehearsal.skipped {
            out.push_str(&format!("  {version}: skipped ({why})\n"));
        }
        printer.out(out);
        return Ok(Exit::Success);
    }

    let upgrade = current.as_ref().is_none_or(|c| c < &target);
    if client.config.policy.destructive == DestructivePolicy::Deny {
        // Up: what the new migrations do. Down: what undoing them loses.
        let findings: Vec<String> = if upgrade {
            fleet
                .catalog
                .between(current.as_ref(), &target)
                .into_iter()
                .flat_map(lint::lint)
                .collect::<Vec<_>>()
        } else {
            fleet
                .catalog
                .migrations
                .iter()
                .filter(|m| m.version > target && current.as_ref().is_some_and(|c| &m.version <= c))
                .flat_map(lint::lint_down)
                .collect()
        }
        .into_iter()
        .filter(|f| f.is_destructive())
        .map(|f| f.to_string())
        .collect();
        if !findings.is_empty() {
            session.close().await;
            bail!(Refused(format!(
                "client {name}: destructive statements under policy.destructive: deny:\n  {}\nset policy.destructive: allow to run them",
                findings.join("\n  ")
            )));
        }
    }
    let report = if upgrade {
        session.migrate_up(&fleet.catalog, &target, act).await
    } else {
        session
            .migrate_down(&fleet.catalog, Some(&target), act)
            .await
    };
    session.close().await;
    let report = report.map_err(pg)?;
    if report.versions.is_empty() {
        printer.out(format!("{name}: up to date at {target}"));
    } else {
        printer.out(format!(
            "{name}: {} {} migration(s) in {} ms: {}; schema now {target}",
            if upgrade { "applied" } else { "rolled back" },
            report.versions.len(),
            report.elapsed.as_millis(),
            summarize(&report.versions)
        ));
    }
    Ok(Exit::Success)
}

/// The versions a run touched, shortened when there are many: a first run on a new
/// database can apply hundreds, and one line per terminal is enough to say which.
fn summarize(versions: &[Version]) -> String {
    const SHOWN: usize = 8;
    let names: Vec<String> = versions.iter().map(ToString::to_string).collect();
    if names.len() <= SHOWN {
        return names.join(", ");
    }
    format!(
        "{}, … {} more …, {}",
        names[..3].join(", "),
        names.len() - 5,
        names[names.len() - 2..].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(n: usize) -> Vec<Version> {
        (0..n)
            .map(|i| format!("2024_01_01_{i:03}").parse().expect("version"))
            .collect()
    }

    #[test]
    fn a_few_versions_are_all_listed() {
        assert_eq!(
            summarize(&versions(3)),
            "2024_01_01_000, 2024_01_01_001, 2024_01_01_002"
        );
    }

    #[test]
    fn many_versions_are_shortened_to_the_first_three_and_the_last_two() {
        assert_eq!(
            summarize(&versions(300)),
            "2024_01_01_000, 2024_01_01_001, 2024_01_01_002, … 295 more …, 2024_01_01_298, 2024_01_01_299"
        );
    }
}
