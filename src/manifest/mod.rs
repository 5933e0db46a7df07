//! Desired state: the manifest types, reading a fleet directory under budgets, merging
//! defaults, and checking everything with file:line:column diagnostics.

pub mod changed;
mod config;
pub mod diagnostic;
pub mod duration;
mod load;
pub mod schedule;
pub mod schema;
mod types;
pub mod yaml;

pub use config::{
    Analysis, ClientConfig, CodeConfig, CodeVersion, DatabaseConfig, Health, Policy, Rollout,
    RolloutStage,
};
pub use diagnostic::{Diagnostic, Position, Severity};
pub use load::{Client, Fleet, FleetError, LoadOptions, Loaded, load, merge};
pub use types::*;
