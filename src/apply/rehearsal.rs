//! Rehearsing a client's pending migrations for a plan: pick (or take) the backup to copy,
//! pick the server for the scratch copy, run `postgres::rehearse`, and remember the
//! result so that the look under the lock, and the daemon's next passes, reuse it instead
//! of restoring the same copy again.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::ApplyError;
use super::record::Event;
use crate::manifest::{Client, Fleet};
use crate::migrations::Version;
use crate::plan::Rehearsal;
use crate::postgres::backup;
use crate::postgres::rehearse::{RehearsalInput, rehearse};
use crate::secret::Secret;

/// How long a rehearsal stands for the same migrations on the same version: production's
/// data moves on, so an old rehearsal says less and less about the next run.
const FRESH_FOR: Duration = Duration::from_secs(3600);

/// Rehearse `client`'s migrations from `current` up to its target on a scratch copy, or
/// return the result of an identical rehearsal made in this process within the hour.
pub async fn rehearse_for_plan(
    fleet: &Fleet,
    client: &Client,
    database_url: &Secret,
    current: Option<&Version>,
) -> Result<Rehearsal, ApplyError> {
    static MEMO: Mutex<BTreeMap<String, (Instant, Rehearsal)>> = Mutex::new(BTreeMap::new());
    let key = memo_key(fleet, client, current);
    let remembered = MEMO
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .filter(|(at, _)| at.elapsed() < FRESH_FOR)
        .map(|(_, r)| r.clone());
    if let Some(rehearsal) = remembered {
        return Ok(rehearsal);
    }
    let target = &client.config.database.schema_version;
    let rehearsal = rehearse_now(fleet, client, database_url, current, target).await?;
    MEMO.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, (Instant::now(), rehearsal.clone()));
    Ok(rehearsal)
}

/// Rehearse now, from `current` up to `to`, on a copy of the newest backup at `current`
/// (taking one when there is none: `pg_dump` only takes ACCESS SHARE locks, which block
/// no query).
pub async fn rehearse_now(
    fleet: &Fleet,
    client: &Client,
    database_url: &Secret,
    current: Option<&Version>,
    to: &Version,
) -> Result<Rehearsal, ApplyError> {
    let name = &client.config.name;
    backup::sync(name, &fleet.backups_dir).await?;
    let found = backup::list(name, &fleet.backups_dir)?
        .into_iter()
        .find(|b| b.version().as_ref() == current);
    let info = match found {
        Some(info) => info,
        None => backup::take(name, database_url, &fleet.backups_dir, current).await?,
    };
    let (info, file) = backup::find(name, &fleet.backups_dir, &info.id)?;
    backup::check(name, &fleet.backups_dir, &info, &file).await?;
    let server = match &client.config.rehearsal_url {
        Some(reference) => reference.resolve().map_err(|e| ApplyError::Config {
            client: name.clone(),
            message: format!("spec.rehearsal.url: {e}"),
        })?,
        None => database_url.clone(),
    };
    let rehearsal = rehearse(RehearsalInput {
        client: name.clone(),
        server,
        backup_id: info.id,
        backup_file: file,
        catalog: fleet.catalog.clone(),
        to: to.clone(),
        database: client.config.database.clone(),
        pinned: client.config.database.identity,
    })
    .await?;
    Ok(rehearsal)
}

/// The update record of the rehearsal a plan was made with: its figures, line by line.
pub fn describe(event: &mut Event, rehearsal: &Rehearsal) {
    event.duration_ms = i64::try_from(rehearsal.elapsed_ms).ok();
    event.versions = rehearsal
        .migrations
        .iter()
        .map(|m| m.version.to_string())
        .collect();
    let mut detail = rehearsal.headline();
    for m in &rehearsal.migrations {
        detail.push_str(&format!("\n{m}"));
    }
    event.detail = Some(detail);
}

/// Same client, same starting version, same target and same files (up, down and verify
/// scripts on the path): same rehearsal.
fn memo_key(fleet: &Fleet, client: &Client, current: Option<&Version>) -> String {
    let target = &client.config.database.schema_version;
    let mut hasher = Sha256::new();
    hasher.update(client.config.name.as_bytes());
    hasher.update(current.map_or("", Version::as_str).as_bytes());
    hasher.update(target.as_str().as_bytes());
    let database = &client.config.database;
    hasher.update(format!("{:?}{:?}", database.rls_tables, database.checks).as_bytes());
    for m in fleet.catalog.between(current, target) {
        for script in [Some(&m.up), m.verify.as_ref()].into_iter().flatten() {
            hasher.update(script.checksum.as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}
