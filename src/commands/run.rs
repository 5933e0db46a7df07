//! `steward run`: the daemon. SIGTERM or SIGINT stops new steps, lets the running one
//! finish (a migration is never abandoned half-way), and exits 0.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use super::support::daemon_actor;
use crate::cli::RunArgs;
use crate::daemon::{self, ClientStatus, Settings, Shard};
use crate::exit::Exit;
use crate::manifest::Fleet;
use crate::output::{Printer, table};
use crate::progress::Progress;
use crate::status;

pub async fn run(args: RunArgs, printer: &Printer) -> Result<Exit> {
    let shard = match &args.shard {
        Some(text) => Shard::parse(text).map_err(anyhow::Error::msg)?,
        None => Shard::ALL,
    };
    // `--once` has an end to show: a bar over the fleet's clients on a terminal. The
    // endless daemon prints plain step lines.
    let progress = if args.once {
        let total = Fleet::load(&args.fleet.fleet).map_or(0, |fleet| {
            fleet.clients.keys().filter(|name| shard.owns(name)).count()
        });
        Progress::clients(total, "converging", printer.color())
    } else {
        Progress::lines(printer.color())
    };
    let advance = progress.clone();
    let settings = Settings {
        fleet_dir: args.fleet.fleet.clone(),
        interval: args.interval,
        db_resync: args.db_resync,
        concurrency: args.concurrency,
        shard,
        once: args.once,
        pull: args.pull,
        actor: daemon_actor(),
        on_step: Some(progress.on_step()),
        on_reconciled: Some(Arc::new(move |_: &str, _: &ClientStatus| advance.advance())),
    };
    let shared = daemon::shared(args.interval);
    // The webhook secret comes from the environment only: a flag's value would show in
    // process listings.
    shared.write().await.webhook_secret = std::env::var("STEWARD_GITHUB_WEBHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .map(crate::secret::Secret::new);
    if let Some(addr) = &args.listen {
        let status = &args.status_server;
        let limits = daemon::ServerLimits {
            max_connections: status
                .status_max_connections
                .map_or_else(daemon::ServerLimits::default_max_connections, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            header_timeout: status.status_header_timeout,
            request_timeout: status.status_request_timeout,
            max_body: status.status_max_body,
            ..daemon::ServerLimits::default()
        };
        daemon::serve(addr, shared.clone(), limits)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        printer.note(format!(
            "status server on http://{addr} (/healthz /readyz /metrics /status)"
        ));
    }
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::warn!("shutdown requested: finishing the running step, starting no new one");
        let _ = stop_tx.send(true);
    });
    let exit = daemon::run(settings, shared.clone(), stop).await;
    progress.finish();
    if args.once {
        printer.out(summary(&shared.read().await.clients));
    }
    Ok(exit)
}

/// One line per client, then the counts by phase.
fn summary(clients: &BTreeMap<String, ClientStatus>) -> String {
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|(name, c)| {
            vec![
                name.clone(),
                c.phase.to_string(),
                if c.reason.is_empty() {
                    "—".to_owned()
                } else {
                    c.reason.clone()
                },
            ]
        })
        .collect();
    let mut out = table::render(&["CLIENT", "PHASE", "REASON"], &rows);
    out.push_str(&status::footer(&status::counts(
        clients.values().map(|c| &c.phase),
    )));
    out
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
