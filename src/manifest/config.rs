//! A client's configuration after defaults are merged and every field is checked: the
//! typed input to planning. Secret *references* only; values are resolved on use.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::schedule::Schedule;
use super::types::{
    ApplyPolicy, BackupPolicy, Check, DestructivePolicy, DriftPolicy, EnvValue, IrreversiblePolicy,
    OutsideChangePolicy, RehearsePolicy, RollbackPolicy,
};
use crate::migrations::Version;
use crate::secret::SecretRef;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub wave: Option<String>,
    pub suspend: bool,
    pub code: CodeConfig,
    pub database: DatabaseConfig,
    pub env: BTreeMap<String, EnvValue>,
    pub schedule: Schedule,
    pub policy: Policy,
    /// The server rehearsals create their scratch database on (None: the client's own).
    pub rehearsal_url: Option<SecretRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeConfig {
    pub project: String,
    pub version: CodeVersion,
}

/// What code a client should run: an exact commit, or a tag to resolve through GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum CodeVersion {
    Sha(String),
    Tag(String),
}

impl CodeVersion {
    /// A full 40-hex SHA, or a git tag name. An abbreviated or malformed SHA is an error,
    /// not a tag: `a1b2c3d` would otherwise be looked up as a tag and fail far from here.
    pub fn parse(text: &str) -> Result<CodeVersion, String> {
        let is_hex = !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex && text.len() == 40 {
            return Ok(CodeVersion::Sha(text.to_ascii_lowercase()));
        }
        if is_hex && text.len() >= 7 {
            return Err(format!(
                "`{text}` looks like an abbreviated or malformed commit SHA ({} hex characters); write the full 40-character SHA or a tag",
                text.len()
            ));
        }
        let valid_tag = !text.is_empty()
            && !text.starts_with(['-', '.', '/'])
            && !text.ends_with(['.', '/'])
            && !text.contains("..")
            && !text.ends_with(".lock")
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/+".contains(&b));
        if valid_tag {
            Ok(CodeVersion::Tag(text.to_owned()))
        } else {
            Err(format!(
                "`{text}` is neither a 40-hex commit SHA nor a valid tag name"
            ))
        }
    }

    pub fn sha(&self) -> Option<&str> {
        match self {
            CodeVersion::Sha(sha) => Some(sha),
            CodeVersion::Tag(_) => None,
        }
    }
}

impl fmt::Display for CodeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodeVersion::Sha(sha) => f.write_str(sha),
            CodeVersion::Tag(tag) => write!(f, "tag {tag}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    pub url: SecretRef,
    pub identity: Option<uuid::Uuid>,
    pub schema_version: Version,
    pub rls_tables: Vec<String>,
    pub checks: Vec<Check>,
}

/// The client's policy, every default filled in with the careful choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Default manual: the guide gates production on an approval.
    pub apply: ApplyPolicy,
    /// Default deny: destructive SQL needs an explicit allow.
    pub destructive: DestructivePolicy,
    /// Default required: always back up before migrating.
    pub backup: BackupPolicy,
    /// Default auto: a failed step is undone at once.
    pub rollback: RollbackPolicy,
    /// Default 15m: the guide's "monitor for 15-30 minutes".
    pub bake: Duration,
    pub health: Health,
    /// Default block: a downgrade through an irreversible migration needs a person.
    pub irreversible: IrreversiblePolicy,
    /// Default skip: a rehearsal costs a backup and a restore.
    pub rehearse: RehearsePolicy,
    /// Default none: no limit on how long a rehearsal may hold ACCESS EXCLUSIVE.
    pub max_lock_time: Option<Duration>,
    /// Default block: nobody reviewed a schema changed by hand.
    pub drift: DriftPolicy,
    /// Default false: taking promotion over changes the project, so it is asked for.
    pub take_over_promotion: bool,
    /// Default hold: a person decides about a production nobody here promoted.
    pub outside_change: OutsideChangePolicy,
    /// Default none: promote + bake.
    pub rollout: Option<Rollout>,
}

/// `policy.rollout`, validated: stages rising to 100, the analysis with its defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rollout {
    pub stages: Vec<RolloutStage>,
    pub analysis: Analysis,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RolloutStage {
    pub percent: u8,
    /// How long the stage is watched; zero for the last (100%) stage.
    #[serde(serialize_with = "super::duration::serialize")]
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Analysis {
    /// The highest passing 5xx share, in basis points (1% = 100), so the policy stays `Eq`.
    pub max_error_bp: u32,
    pub min_requests: u64,
    pub health: bool,
    pub on_insufficient_traffic: super::types::InsufficientTraffic,
}

impl Analysis {
    pub fn max_error_rate(&self) -> f64 {
        f64::from(self.max_error_bp) / 10_000.0
    }
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            max_error_bp: 100,
            min_requests: 50,
            health: true,
            on_insufficient_traffic: super::types::InsufficientTraffic::Hold,
        }
    }
}

/// Read a rate like `1%`, `0.5%` or `0.005` as basis points.
pub fn parse_rate(text: &str) -> Result<u32, String> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (trimmed, 10_000.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * scale <= 10_000.0 => {
            Ok((n * scale).round() as u32)
        }
        _ => Err(format!(
            "`{text}` is not a rate between 0% and 100% (write it like `1%` or `0.5%`)"
        )),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub path: String,
    pub expect_status: u16,
    pub timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            apply: ApplyPolicy::Manual,
            destructive: DestructivePolicy::Deny,
            irreversible: IrreversiblePolicy::Block,
            rehearse: RehearsePolicy::Skip,
            max_lock_time: None,
            drift: DriftPolicy::Block,
            rollout: None,
            take_over_promotion: false,
            outside_change: OutsideChangePolicy::Hold,
            backup: BackupPolicy::Required,
            rollback: RollbackPolicy::Auto,
            bake: Duration::from_secs(15 * 60),
            health: Health {
                path: "/".to_owned(),
                expect_status: 200,
                timeout: Duration::from_secs(10),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CodeVersion;

    #[test]
    fn a_full_sha_is_a_sha_and_a_release_name_is_a_tag() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            CodeVersion::parse(sha),
            Ok(CodeVersion::Sha(sha.to_owned()))
        );
        assert_eq!(
            CodeVersion::parse("v1.4.0"),
            Ok(CodeVersion::Tag("v1.4.0".to_owned()))
        );
        assert_eq!(
            CodeVersion::parse("release/2024-12"),
            Ok(CodeVersion::Tag("release/2024-12".to_owned()))
        );
    }

    #[test]
    fn an_abbreviated_sha_is_an_error_not_a_tag() {
        let err = CodeVersion::parse("0123456").expect_err("short sha");
        assert!(err.contains("abbreviated"));
        assert!(CodeVersion::parse("0123456789abcdef0123456789abcdef012345678").is_err());
    }

    #[test]
    fn impossible_tag_names_are_refused() {
        for bad in ["", "-x", "a..b", "x.lock", "has space", "a/"] {
            assert!(CodeVersion::parse(bad).is_err(), "{bad:?}");
        }
    }
}
