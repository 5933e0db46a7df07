//! Small helpers the subcommands share: loading the fleet and one client, resolving its
//! database URL, and mapping library errors onto the exit-code convention.

use anyhow::{Context as _, Result};

use crate::cli::ClientArgs;
use crate::exit::Refused;
use crate::manifest::{Client, Fleet};
use crate::postgres::PgError;
use crate::secret::Secret;

/// The fleet and the named client, both checked.
pub fn load_client(args: &ClientArgs) -> Result<(Fleet, Client)> {
    let fleet = Fleet::load(&args.fleet.fleet)?;
    let client = fleet.client(&args.client)?.clone();
    Ok((fleet, client))
}

pub fn database_url(client: &Client) -> Result<Secret> {
    client
        .config
        .database
        .url
        .resolve()
        .with_context(|| format!("client {}: spec.database.url", client.config.name))
}

/// A guard's refusal becomes exit 3; anything else stays an error (exit 1).
pub fn pg(err: PgError) -> anyhow::Error {
    if err.is_refusal() {
        anyhow::Error::new(Refused(err.to_string()))
    } else {
        anyhow::Error::new(err)
    }
}

/// Who is acting, for records (`applied_by`, `steward_events.actor`): `$STEWARD_ACTOR`
/// when set, else `steward cli (user@host)`.
pub fn actor() -> String {
    named_actor().unwrap_or_else(|| {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        match gethostname::gethostname().into_string() {
            Ok(host) if !host.is_empty() => format!("steward cli ({user}@{host})"),
            _ => format!("steward cli ({user})"),
        }
    })
}

/// The daemon's name in records: `$STEWARD_ACTOR` when set, else `steward daemon`.
pub fn daemon_actor() -> String {
    named_actor().unwrap_or_else(|| "steward daemon".to_owned())
}

fn named_actor() -> Option<String> {
    std::env::var("STEWARD_ACTOR")
        .ok()
        .filter(|name| !name.trim().is_empty())
}

/// The fleet checkout's HEAD, when the fleet lives in a Git work tree.
pub fn fleet_revision(fleet: &Fleet) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(&fleet.dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub fn mark(passed: bool) -> &'static str {
    if passed { "pass" } else { "FAIL" }
}

/// The fleet's and the clients' destinations for a terminal command: what it sends is
/// delivered before the command exits (see [`flush_notifications`]), with the same
/// retries and the same once-only keys as the daemon's.
pub fn notifier(fleet: &Fleet) -> crate::notify::Notifier {
    let notifier = crate::notify::Notifier::new(None);
    notifier.configure(fleet);
    notifier
}

/// Wait for queued notifications, at most 15 s: a dead webhook never holds a command long.
pub async fn flush_notifications(notifier: &crate::notify::Notifier) {
    notifier.flush(std::time::Duration::from_secs(15)).await;
}

/// What a failed run undid, kept, could not undo and could not record, a line each.
pub fn undo_lines(
    undo: &crate::apply::undo::UndoPlan,
    undo_errors: &[String],
    record_errors: &[String],
) -> Vec<String> {
    let mut lines: Vec<String> = undo
        .run
        .iter()
        .map(|(kind, _)| format!("undone: {kind}"))
        .collect();
    lines.extend(
        undo.kept
            .iter()
            .map(|(kind, why)| format!("KEPT: {kind} — {why}")),
    );
    lines.extend(undo_errors.iter().map(|e| format!("undo failed: {e}")));
    lines.extend(
        record_errors
            .iter()
            .map(|e| format!("update record not written: {e}")),
    );
    lines
}
