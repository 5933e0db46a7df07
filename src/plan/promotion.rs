//! Who puts code on production. With Vercel's Git integration every project linked to
//! the app repository builds each push to the production branch, and a project that
//! auto-assigns its production domains puts that build live at once: on every client
//! together, before its migrations, outside every wave and window. The planner blocks such
//! a project until steward takes promotion over, and judges a production that moved to a
//! commit steward did not promote as an outside change (held or reverted per policy).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::input::{Desired, Observed};
use super::step::short;
use crate::manifest::OutsideChangePolicy;

/// Production runs a commit steward did not put there: who and when, from the
/// deployment's own metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutsideChange {
    /// The deployment serving production now.
    pub deployment: String,
    pub sha: Option<String>,
    /// Who made it: the commit's author for a Git push, else the deployment's creator.
    pub by: Option<String>,
    /// When it was built.
    pub at: Option<DateTime<Utc>>,
    /// The commit message, for a Git push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The deployment steward last put on production.
    pub steward: String,
    /// `policy.outsideChange`.
    pub policy: OutsideChangePolicy,
}

impl fmt::Display for OutsideChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "production changed outside steward: it runs {} ({}",
            self.sha.as_deref().map_or("an unknown commit", short),
            self.deployment
        )?;
        if let Some(by) = &self.by {
            write!(f, ", by {by}")?;
        }
        if let Some(at) = &self.at {
            write!(f, " at {}", at.format("%Y-%m-%d %H:%M UTC"))?;
        }
        if let Some(message) = &self.message {
            let first = message.lines().next().unwrap_or_default();
            write!(f, ": \"{first}\"")?;
        }
        write!(f, "), not {}, which steward promoted", self.steward)
    }
}

/// The production deployment, when it is not one steward promoted and does not run the
/// manifest's commit. Nothing is judged without a record of what steward promoted (a
/// client steward never deployed to), and a production on the manifest's commit is
/// converged whoever put it there.
pub fn outside_change(desired: &Desired, observed: &Observed) -> Option<OutsideChange> {
    let code = &observed.code;
    let production = code.production.as_ref()?;
    let steward = code.promoted_by_steward.first()?;
    if code.promoted_by_steward.contains(&production.id)
        || production.sha.as_deref() == Some(desired.sha.as_str())
    {
        return None;
    }
    let origin = production.origin.clone().unwrap_or_default();
    Some(OutsideChange {
        deployment: production.id.clone(),
        sha: production.sha.clone(),
        by: origin.by,
        at: origin.at,
        message: origin.message,
        steward: steward.clone(),
        policy: desired.config.policy.outside_change,
    })
}

/// Whether the project puts every production build live by itself and steward has not
/// been told to take that over.
pub fn auto_promotes(desired: &Desired, observed: &Observed) -> bool {
    observed.code.auto_promote && !desired.config.policy.take_over_promotion
}

/// The risk in words, for the block and for `adopt`.
pub fn risk(client: &str) -> String {
    format!(
        "the Vercel project auto-assigns its production domains (autoAssignCustomDomains: true): every push to the production branch goes live on this client at once, before its migrations and outside every wave and window; run `steward adopt {client} --take-over-promotion` or set policy.takeOverPromotion: true, and steward turns it off and promotes each release itself"
    )
}
