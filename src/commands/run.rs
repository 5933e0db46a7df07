//! `steward run`: the daemon. SIGTERM or SIGINT stops new steps, lets the running one
//! finish (a migration is never abandoned half-way), and exits 0.

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use super::support::actor;
use crate::cli::RunArgs;
use crate::daemon::{self, Settings, Shard};
use crate::exit::Exit;
use crate::output::Printer;

pub async fn run(args: RunArgs, printer: &Printer) -> Result<Exit> {
    let shard = match &args.shard {
        Some(text) => Shard::parse(text).map_err(anyhow::Error::msg)?,
        None => Shard::ALL,
    };
    let settings = Settings {
        fleet_dir: args.fleet.fleet.clone(),
        interval: args.interval,
        db_resync: args.db_resync,
        concurrency: args.concurrency,
        shard,
        once: args.once,
        pull: args.pull,
        actor: std::env::var("STEWARD_ACTOR")
            .unwrap_or_else(|_| format!("steward daemon ({})", actor())),
        on_step: progress(printer.color()),
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
    if args.once {
        let clients = shared.read().await.clients.clone();
        let mut out = String::new();
        for (name, c) in clients {
            out.push_str(&format!("{name:<16} {:<10} {}\n", c.phase, c.reason));
        }
        printer.out(out);
    }
    Ok(exit)
}

/// Step-by-step progress on stderr: what a person watching the rollout wants to see.
/// The lines carry keys, versions and deployment ids only, never values.
fn progress(color: bool) -> Option<crate::apply::OnStep> {
    use crate::apply::StepEvent;
    use crate::output::{Style, paint};
    Some(std::sync::Arc::new(
        move |client: &str, step: &crate::plan::Step, event: StepEvent| {
            let line = match event {
                StepEvent::Started => return,
                StepEvent::Succeeded(took) => format!(
                    "{client:>10} {} {step} ({} ms)",
                    paint(color, "✓", Style::Green),
                    took.as_millis()
                ),
                StepEvent::Failed(err) => format!(
                    "{client:>10} {} {step}: {err}",
                    paint(color, "✗", Style::Red)
                ),
                StepEvent::Undone => format!(
                    "{client:>10} {} undone: {}",
                    paint(color, "↶", Style::Yellow),
                    step.kind()
                ),
            };
            eprintln!("{line}");
        },
    ))
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
