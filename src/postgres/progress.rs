//! How far a failed run got, so its error tells the truth: a run is several transactions
//! when a no-transaction migration splits it, and the batches before the failure stay
//! committed. "Nothing was applied" is said only when nothing was.

use std::fmt;

use super::path::Direction;
use crate::migrations::{Version, summarize};

/// Which versions of a failed run committed, which stopped part-way, which did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub direction: Direction,
    /// Committed before the failure: they stay applied (or rolled back, going down).
    pub committed: Vec<Version>,
    /// A no-transaction migration that failed: the statements before the failing one are
    /// committed, and its row says `failed` until `steward repair`.
    pub stopped: Option<Stopped>,
    /// Rolled back with the failing batch, or never started.
    pub not_committed: Vec<Version>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub version: Version,
    pub statements_committed: usize,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = match self.direction {
            Direction::Up => "applied",
            Direction::Down => "rolled back",
        };
        let mut parts = Vec::new();
        if self.committed.is_empty() && self.stopped.is_none() {
            parts.push(format!("nothing of this run was {done}"));
        }
        if !self.committed.is_empty() {
            parts.push(format!(
                "committed before the failure, and now {done}: {}",
                summarize(&self.committed)
            ));
        }
        if let Some(stopped) = &self.stopped {
            let statements = match stopped.statements_committed {
                0 => "none of its statements committed".to_owned(),
                1 => "its first statement stays committed".to_owned(),
                n => format!("its first {n} statements stay committed"),
            };
            parts.push(format!(
                "{} runs outside a transaction: {statements}, and it is recorded `failed` until `steward repair`",
                stopped.version
            ));
        }
        if !self.not_committed.is_empty() {
            parts.push(format!("not {done}: {}", summarize(&self.not_committed)));
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().expect("version")
    }

    #[test]
    fn a_run_that_committed_nothing_says_so_and_lists_what_was_not_applied() {
        let progress = Progress {
            direction: Direction::Up,
            committed: vec![],
            stopped: None,
            not_committed: vec![v("2024_01_01_001"), v("2024_01_02_001")],
        };
        assert_eq!(
            progress.to_string(),
            "nothing of this run was applied; not applied: 2024_01_01_001, 2024_01_02_001"
        );
    }

    #[test]
    fn a_run_split_by_a_no_transaction_migration_names_what_stays_committed() {
        let progress = Progress {
            direction: Direction::Up,
            committed: vec![v("2024_01_01_001")],
            stopped: Some(Stopped {
                version: v("2024_01_02_001"),
                statements_committed: 2,
            }),
            not_committed: vec![v("2024_01_03_001")],
        };
        assert_eq!(
            progress.to_string(),
            "committed before the failure, and now applied: 2024_01_01_001; 2024_01_02_001 runs outside a transaction: its first 2 statements stay committed, and it is recorded `failed` until `steward repair`; not applied: 2024_01_03_001"
        );
    }

    #[test]
    fn a_downgrade_speaks_of_rolling_back() {
        let progress = Progress {
            direction: Direction::Down,
            committed: vec![v("2024_01_02_001")],
            stopped: None,
            not_committed: vec![v("2024_01_01_001")],
        };
        assert_eq!(
            progress.to_string(),
            "committed before the failure, and now rolled back: 2024_01_02_001; not rolled back: 2024_01_01_001"
        );
    }
}
