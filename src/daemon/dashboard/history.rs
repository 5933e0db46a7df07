//! A client's update records for its dashboard page, read from `steward_events` in the
//! client's own database. An open page polls every few seconds; reads are shared for a
//! short while so a page (or several) costs one short read-only connection per
//! [`FRESH_FOR`], and nothing at all while no page is open.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::apply::record::{self, Event};
use crate::manifest::Client;
use crate::postgres::{self, Access};

/// How long one read serves every page of a client.
const FRESH_FOR: Duration = Duration::from_secs(3);

/// Records shown on a client's page, newest first.
const SHOWN: u32 = 50;

#[derive(Debug, Default)]
pub struct HistoryCache {
    reads: Mutex<HashMap<String, (Instant, Vec<Event>)>>,
}

impl HistoryCache {
    /// The newest records of `client`; an error is a sentence for the page.
    pub async fn get(&self, client: &Client) -> Result<Vec<Event>, String> {
        let name = &client.config.name;
        // Held across the read: concurrent polls of one page wait for one connection.
        let mut reads = self.reads.lock().await;
        if let Some((at, events)) = reads.get(name)
            && at.elapsed() < FRESH_FOR
        {
            return Ok(events.clone());
        }
        let events = read(client).await?;
        reads.insert(name.clone(), (Instant::now(), events.clone()));
        Ok(events)
    }
}

async fn read(client: &Client) -> Result<Vec<Event>, String> {
    let name = &client.config.name;
    let url = client
        .config
        .database
        .url
        .resolve()
        .map_err(|err| format!("spec.database.url: {err}"))?;
    let mut conn = postgres::connect(name, &url, Access::ReadOnly)
        .await
        .map_err(|err| err.to_string())?;
    let events = record::history(&mut conn, SHOWN).await;
    postgres::close(conn).await;
    events.map_err(|err| err.to_string())
}
