#![recursion_limit = "256"]
//! steward: converge a fleet of client deployments (Vercel + Postgres) to the state their
//! Git manifests declare, one guarded, reversible step at a time.
//!
//! The folders mirror the architecture (see `docs/ARCHITECTURE.md`): `manifest` is the
//! desired state, `postgres` and `vercel` observe and act on live systems, `plan` is the
//! pure diff, `apply` executes it, `daemon` loops it, and `commands` is the CLI surface.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod emulator;
pub mod exit;
pub mod github;
pub mod manifest;
pub mod migrations;
pub mod notify;
pub mod output;
pub mod plan;
pub mod postgres;
pub mod progress;
pub mod secret;
pub mod status;
pub mod vercel;
