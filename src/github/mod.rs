//! steward's GitHub side, on octocrab: the plan as one sticky PR comment, a commit
//! status for the plan, and tags resolved to commits.
//!
//! `client` makes the calls; `sticky` holds the pure decisions (which comment is ours,
//! whether it changed, how to cut a body that is too long); `error` says what failed and
//! whether trying again helps.

mod client;
mod error;
pub mod sticky;
pub mod webhook;

use std::fmt;
use std::str::FromStr;

pub use client::{CommitState, GithubClient, Identity, PLAN_STATUS_CONTEXT};
pub use error::{GithubError, MAX_ATTEMPTS, MAX_RATE_LIMIT_WAIT, Retry};
pub use sticky::{MAX_COMMENT_CHARS, MAX_DESCRIPTION_CHARS, StickyOutcome};

use crate::secret::Secret;

/// The public GitHub API; GitHub Enterprise Server lives at `https://HOST/api/v3`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// How steward authenticates to GitHub. `Debug` never shows a token or a key.
#[derive(Clone)]
pub enum GithubAuth {
    /// A personal access token, or the installation token GitHub Actions provides.
    Token(Secret),
    /// A GitHub App: a JWT signed with the App's key is exchanged for an installation
    /// token (octocrab caches and renews it).
    App {
        app_id: u64,
        private_key_pem: Secret,
        installation_id: u64,
    },
}

impl GithubAuth {
    pub fn token(token: impl Into<String>) -> Self {
        GithubAuth::Token(Secret::new(token))
    }
}

impl fmt::Debug for GithubAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GithubAuth::Token(_) => f.write_str("Token(<redacted>)"),
            GithubAuth::App {
                app_id,
                installation_id,
                ..
            } => f
                .debug_struct("App")
                .field("app_id", app_id)
                .field("private_key_pem", &"<redacted>")
                .field("installation_id", installation_id)
                .finish(),
        }
    }
}

/// A repository, `OWNER/NAME`, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl FromStr for Repo {
    type Err = GithubError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match text.split_once('/') {
            Some((owner, name)) if valid(owner) && valid(name) => Ok(Repo {
                owner: owner.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(GithubError::Config(format!(
                "`{text}` is not a repository: write OWNER/NAME"
            ))),
        }
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_owner_slash_name_and_nothing_else() {
        let repo: Repo = "example-org/web.app".parse().expect("valid");
        assert_eq!(repo.to_string(), "example-org/web.app");
        for bad in ["", "owner", "owner/", "/name", "a/b/c", "own er/name"] {
            assert!(bad.parse::<Repo>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn debug_never_shows_a_token_or_a_key() {
        let token = GithubAuth::token("ghp_supersecret");
        let app = GithubAuth::App {
            app_id: 7,
            private_key_pem: Secret::new("-----BEGIN RSA PRIVATE KEY-----secret"),
            installation_id: 9,
        };
        let shown = format!("{token:?} {app:?}");
        assert!(
            !shown.contains("supersecret") && !shown.contains("BEGIN"),
            "{shown}"
        );
        assert!(shown.contains("app_id: 7"), "{shown}");
    }
}
