//! The exit-code convention shared by every command, so scripts and CI can branch on it.

use std::fmt;

/// How a command ended. The numeric values are part of steward's public interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Exit {
    /// Success; for `plan`, nothing to do.
    Success = 0,
    /// An error: bad input, an unreachable system, a failed step.
    Error = 1,
    /// `plan --detailed-exitcode`: the plan has changes.
    Changes = 2,
    /// A guard refused: wrong database, plan hash mismatch, blocked plan, held lock.
    Refused = 3,
}

impl Exit {
    /// The most severe of two outcomes, for commands that act on several clients.
    /// Refused and Error outrank Changes, which outranks Success.
    pub fn worst(self, other: Exit) -> Exit {
        fn rank(exit: Exit) -> u8 {
            match exit {
                Exit::Success => 0,
                Exit::Changes => 1,
                Exit::Refused => 2,
                Exit::Error => 3,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", *self as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn an_error_outranks_a_refusal_which_outranks_changes() {
        assert_eq!(Exit::Success.worst(Exit::Changes), Exit::Changes);
        assert_eq!(Exit::Changes.worst(Exit::Refused), Exit::Refused);
        assert_eq!(Exit::Refused.worst(Exit::Error), Exit::Error);
        assert_eq!(Exit::Error.worst(Exit::Success), Exit::Error);
    }
}

/// An error that means "a guard refused", so the command exits 3 rather than 1.
/// Library errors that are refusals are wrapped in this at the command layer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);
