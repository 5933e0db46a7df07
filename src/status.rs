//! A client's standing (phase and why), decided in one place from its plan or its run's
//! outcome, for `steward status`, the daemon's `/status`, metrics and the dashboard.

use std::fmt;

use serde::Serialize;

use crate::plan::{Hold, Outcome, Plan};

/// Where a client stands.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum,
)]
pub enum Phase {
    /// Live state is what the manifest says.
    #[default]
    Converged,
    /// Changes will run (now, or at the daemon's next pass).
    Pending,
    /// Changes wait: for a window, an approval, an earlier wave, or a guard that refused.
    Holding,
    /// Vercel's rate-limit window is spent: it goes on when the window resets.
    RateLimited,
    /// The last apply failed and was undone; the same release is not retried blindly.
    Failed,
    /// steward could not look at the client (unreachable, misconfigured).
    Error,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Converged,
        Phase::Pending,
        Phase::Holding,
        Phase::RateLimited,
        Phase::Failed,
        Phase::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Converged => "Converged",
            Phase::Pending => "Pending",
            Phase::Holding => "Holding",
            Phase::RateLimited => "RateLimited",
            Phase::Failed => "Failed",
            Phase::Error => "Error",
        }
    }

    /// Whether a person should look: listed first on the dashboard.
    pub fn needs_attention(self) -> bool {
        matches!(self, Phase::Failed | Phase::Error)
    }

    /// Sort key: what needs a person first, converged last.
    pub fn urgency(self) -> u8 {
        match self {
            Phase::Error => 0,
            Phase::Failed => 1,
            Phase::Holding => 2,
            Phase::RateLimited => 3,
            Phase::Pending => 4,
            Phase::Converged => 5,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A phase and the words that explain it (empty when converged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub phase: Phase,
    pub reason: String,
}

impl Standing {
    pub fn new(phase: Phase, reason: impl Into<String>) -> Self {
        Standing {
            phase,
            reason: reason.into(),
        }
    }
}

/// The standing a plan gives before anything runs: a failed plan held back, blocks,
/// converged, holds, or the steps still to run (called pending, never completed).
pub fn of_plan(plan: &Plan) -> Standing {
    let joined = |items: Vec<String>| items.join("; ");
    if let Some(failed) = plan.holds.iter().find(|h| matches!(h, Hold::Failed { .. })) {
        return Standing::new(Phase::Failed, failed.to_string());
    }
    match plan.outcome() {
        Outcome::Blocked => Standing::new(
            Phase::Holding,
            joined(plan.blocks.iter().map(ToString::to_string).collect()),
        ),
        Outcome::Converged => Standing::new(Phase::Converged, ""),
        Outcome::Changes if !plan.holds.is_empty() => Standing::new(
            Phase::Holding,
            joined(plan.holds.iter().map(ToString::to_string).collect()),
        ),
        Outcome::Changes => Standing::new(
            Phase::Pending,
            match &plan.interrupted {
                Some(interrupted) => format!("{interrupted}; {}", pending_steps(plan)),
                None => pending_steps(plan),
            },
        ),
    }
}

/// `pending: migrate_up, deploy, …`: the steps that change or check something, without
/// the bookkeeping ones every plan has.
pub fn pending_steps(plan: &Plan) -> String {
    let steps: Vec<&str> = plan
        .steps
        .iter()
        .map(|s| s.kind())
        .filter(|k| !matches!(*k, "preflight" | "record"))
        .collect();
    format!("pending: {}", steps.join(", "))
}

/// Counts by phase, in [`Phase::ALL`] order, for footers and the dashboard.
pub fn counts<'a>(phases: impl IntoIterator<Item = &'a Phase>) -> Vec<(Phase, usize)> {
    let phases: Vec<Phase> = phases.into_iter().copied().collect();
    Phase::ALL
        .iter()
        .map(|p| (*p, phases.iter().filter(|x| *x == p).count()))
        .collect()
}

/// `3 clients: 1 converged, 2 pending` (phases with none are left out).
pub fn footer(counts: &[(Phase, usize)]) -> String {
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(p, n)| format!("{n} {}", p.as_str().to_lowercase()))
        .collect();
    format!(
        "{total} client{}: {}",
        if total == 1 { "" } else { "s" },
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    )
}

/// One update record in a sentence: what it did, or why it failed.
pub fn event_summary(event: &crate::apply::record::Event) -> String {
    let mut parts = Vec::new();
    match event.outcome.as_str() {
        // A request's record says in its detail what it did (the project paused, the
        // backup taken or restored).
        "completed" if event.step != crate::plan::APPLY => parts.push(match &event.detail {
            Some(detail) => format!("{}: {detail}", event.step),
            None => format!("{} completed", event.step),
        }),
        "completed" => parts.push(match &event.plan_hash {
            Some(hash) => format!("applied plan {hash}"),
            None => "applied".to_owned(),
        }),
        "failed" | "rolled_back" => {
            let at = event.detail.as_deref().unwrap_or(&event.step);
            let what = if event.outcome == "failed" {
                "failed"
            } else {
                "rolled back after a failure"
            };
            parts.push(match &event.error {
                Some(error) => format!("{what} at {at}: {error}"),
                None => format!("{what} at {at}"),
            });
        }
        "retry" => parts.push("the Failed state was cleared for a retry".to_owned()),
        // The emergency stop says what it did in its detail (which project, how to undo).
        "manual" if matches!(event.step.as_str(), "pause" | "unpause") => parts.push(
            event
                .detail
                .clone()
                .unwrap_or_else(|| format!("{}d", event.step)),
        ),
        other => parts.push(match &event.detail {
            Some(detail) => format!("{} {}: {detail}", event.step, other.replace('_', " ")),
            None => format!("{} {}", event.step, other.replace('_', " ")),
        }),
    }
    if event.outcome == "completed" && event.step == crate::plan::APPLY {
        if !event.versions.is_empty() {
            parts.push(format!("schema {}", event.versions.join(", ")));
        }
        if !event.env_keys.is_empty() {
            parts.push(format!("env {}", event.env_keys.join(" ")));
        }
        if let Some(deployment) = &event.deployment_id {
            parts.push(format!("deployment {deployment}"));
        }
    }
    format!("{} (by {})", parts.join("; "), event.actor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_counts_each_phase_present_and_the_total() {
        let phases = [Phase::Converged, Phase::Pending, Phase::Converged];
        assert_eq!(
            footer(&counts(&phases)),
            "3 clients: 2 converged, 1 pending"
        );
        assert_eq!(footer(&counts(&[])), "0 clients: none");
    }

    #[test]
    fn failures_come_before_holds_and_converged_comes_last() {
        let mut phases = Phase::ALL.to_vec();
        phases.sort_by_key(|p| p.urgency());
        assert_eq!(phases.first(), Some(&Phase::Error));
        assert_eq!(phases.last(), Some(&Phase::Converged));
    }
}
