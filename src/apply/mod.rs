//! The executor: observe, plan, and carry a plan out step by step under the client's
//! lock — each step's guard checked right before it runs, its undo recorded before it
//! runs — undoing on failure and recording everything in `steward_events`.

pub mod desired;
pub mod record;
pub mod undo;
