//! The daemon's memory of each converged client's database, so a steady-state pass need
//! not open a connection to every client database every `--interval`.
//!
//! Vercel state is read on every pass: one request per client is cheap. A connection to
//! a client database is not: on a real fleet it is a TLS handshake and a backend start on
//! the client's server, and 1,000 of them every minute only to learn that nothing moved is
//! load on the customers' databases. So a pass reuses the last live observation of a
//! client **only** while all of these hold:
//! - that observation led to an empty plan (the client was converged);
//! - it is younger than `--db-resync` (Flux's per-source interval, for drift made behind
//!   steward's back, such as a migration run by hand in the SQL editor);
//! - the client's database settings (URL, identity, schema version) are the ones it was
//!   observed under.
//!
//! Anything else observes live. A cached observation never leads to a write: a plan with
//! steps is made again from a live observation under the client's lock before anything
//! runs, and any run forgets the client, so the next pass looks again.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use crate::manifest::DatabaseConfig;
use crate::plan::Failure;
use crate::postgres::SchemaState;
use crate::secret::Secret;

/// Counts of database observations, live or served from the cache, for the daemon's
/// `steward_database_observations_total{source}` (the daemon owns the registry).
#[derive(Debug, Clone, Default)]
pub struct ObservationCounters {
    pub live: Counter,
    pub cached: Counter,
}

/// Last live observations of converged clients, each good for `max_age`.
#[derive(Debug)]
pub struct SchemaCache {
    max_age: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    counters: ObservationCounters,
}

#[derive(Debug)]
struct Entry {
    key: u64,
    at: Instant,
    schema: SchemaState,
    failure: Option<Failure>,
}

/// What an observation depends on. Held in memory only: the URL is hashed, never kept.
pub(crate) fn key(url: &Secret, database: &DatabaseConfig) -> u64 {
    let mut hasher = DefaultHasher::new();
    url.expose().hash(&mut hasher);
    database.identity.hash(&mut hasher);
    database.schema_version.to_string().hash(&mut hasher);
    hasher.finish()
}

impl SchemaCache {
    pub fn new(max_age: Duration) -> Self {
        SchemaCache {
            max_age,
            entries: Mutex::new(HashMap::new()),
            counters: ObservationCounters::default(),
        }
    }

    /// Count observations into these counters (the daemon's metrics).
    pub fn with_counters(mut self, counters: ObservationCounters) -> Self {
        self.counters = counters;
        self
    }

    /// A client's database was looked at live.
    pub(crate) fn count_live(&self) {
        self.counters.live.inc();
    }

    /// The last observation of `client`, when it is still good for `key`.
    pub(crate) fn get(&self, client: &str, key: u64) -> Option<(SchemaState, Option<Failure>)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries
            .get(client)
            .filter(|e| e.key == key && e.at.elapsed() < self.max_age)?;
        self.counters.cached.inc();
        Some((entry.schema.clone(), entry.failure.clone()))
    }

    /// Remember a live observation that planned nothing.
    pub(crate) fn put(
        &self,
        client: &str,
        key: u64,
        schema: SchemaState,
        failure: Option<Failure>,
    ) {
        let entry = Entry {
            key,
            at: Instant::now(),
            schema,
            failure,
        };
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client.to_owned(), entry);
    }

    /// Look at `client` live next time.
    pub fn forget(&self, client: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::IdentityObserved;
    use crate::secret::SecretRef;

    fn database(version: &str) -> DatabaseConfig {
        DatabaseConfig {
            url: SecretRef::env("UNUSED"),
            identity: None,
            schema_version: version.parse().expect("version"),
            rls_tables: vec![],
            checks: vec![],
        }
    }

    fn state() -> SchemaState {
        SchemaState {
            identity: IdentityObserved::Matches,
            current: Some("2024_01_01_001".parse().expect("version")),
            rows: vec![],
            drift: None,
            has_reference: false,
            interrupted: None,
            request_interrupted: None,
            promoted: vec![],
        }
    }

    #[test]
    fn an_observation_is_reused_for_the_same_database_settings() {
        let cache = SchemaCache::new(Duration::from_secs(60));
        let url = Secret::new("postgres://a/db");
        let k = key(&url, &database("2024_01_01_001"));
        cache.put("acme", k, state(), None);
        assert!(cache.get("acme", k).is_some());
        assert!(cache.get("globex", k).is_none());
    }

    #[test]
    fn a_new_schema_version_or_url_in_the_manifest_observes_live() {
        let cache = SchemaCache::new(Duration::from_secs(60));
        let url = Secret::new("postgres://a/db");
        cache.put(
            "acme",
            key(&url, &database("2024_01_01_001")),
            state(),
            None,
        );
        assert!(
            cache
                .get("acme", key(&url, &database("2024_01_01_002")))
                .is_none()
        );
        let moved = Secret::new("postgres://b/db");
        assert!(
            cache
                .get("acme", key(&moved, &database("2024_01_01_001")))
                .is_none()
        );
    }

    #[test]
    fn an_observation_older_than_the_resync_interval_is_not_used() {
        let cache = SchemaCache::new(Duration::from_millis(20));
        let url = Secret::new("postgres://a/db");
        let k = key(&url, &database("2024_01_01_001"));
        cache.put("acme", k, state(), None);
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get("acme", k).is_none());
    }

    #[test]
    fn a_forgotten_client_is_observed_live() {
        let cache = SchemaCache::new(Duration::from_secs(60));
        let url = Secret::new("postgres://a/db");
        let k = key(&url, &database("2024_01_01_001"));
        cache.put("acme", k, state(), None);
        cache.forget("acme");
        assert!(cache.get("acme", k).is_none());
    }
}
