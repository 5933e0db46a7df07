//! The executor: observe, plan, and carry a plan out step by step under the client's
//! lock — each step's guard checked right before it runs, its undo recorded before it
//! runs — undoing on failure and recording everything in `steward_events`.
//!
//! Level-triggered: every run observes what is live and plans again under the lock, so a
//! run that died half-way converges next time without redoing what already happened.

pub mod cache;
pub mod desired;
mod execute;
mod observe;
pub mod record;
pub mod rehearsal;
pub mod request;
mod steps;
pub mod undo;

pub use cache::SchemaCache;
pub use execute::{
    OnObserved, OnStart, OnStep, Outcome, RolloutProgress, Runner, StepEvent, execute,
    execute_prepared,
};
pub use observe::{Prepared, lint_summary, prepare, vercel_client as prepare_client};
pub use steps::{ErrorClass, StepError};

use crate::postgres::PgError;
use crate::vercel::VercelError;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Desired(#[from] desired::DesiredError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error("client {client}: Vercel: {source}")]
    Vercel {
        client: String,
        #[source]
        source: VercelError,
    },
    #[error("client {client}: {message}")]
    Refused { client: String, message: String },
    #[error("client {client}: {message}")]
    Config { client: String, message: String },
    /// A problem with fleet-wide settings, named by the file that holds them.
    #[error("{file}: {message}")]
    FleetConfig { file: String, message: String },
    #[error(transparent)]
    Record(#[from] record::RecordError),
}

impl ApplyError {
    pub fn vercel(client: &str) -> impl FnOnce(VercelError) -> ApplyError {
        let client = client.to_owned();
        move |source| ApplyError::Vercel { client, source }
    }

    /// A guard's refusal (exit 3), as opposed to a failure.
    pub fn is_refusal(&self) -> bool {
        match self {
            ApplyError::Refused { .. } => true,
            ApplyError::Postgres(err) => err.is_refusal(),
            _ => false,
        }
    }

    /// When a Vercel rate limit that stopped this run resets.
    pub fn rate_limited_until(&self) -> Option<std::time::SystemTime> {
        match self {
            ApplyError::Vercel { source, .. } => source.rate_limited_until(),
            _ => None,
        }
    }

    /// Whether the daemon should retry soon (network, rate limits) or wait for a change.
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::Postgres(err) => err.is_retryable(),
            ApplyError::Vercel { source, .. } => source.is_transient(),
            ApplyError::Record(_) => true,
            _ => false,
        }
    }
}
