//! Secret references and secret values.
//!
//! Manifests never hold secret values; they name where one comes from. A resolved value is
//! wrapped in [`Secret`], whose `Debug` and `Display` never print it, and is shown to people
//! only as a short keyed [`fingerprint`].

use std::fmt;

use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Where a secret value comes from. Today: a variable in steward's own environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the environment variable (in steward's own process) that holds the value.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub env: String,
}

impl SecretRef {
    pub fn env(name: impl Into<String>) -> Self {
        Self { env: name.into() }
    }

    /// Read the value now. Only commands that need the value call this.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match std::env::var(&self.env) {
            Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
            Ok(_) => Err(SecretError::Empty {
                var: self.env.clone(),
            }),
            Err(_) => Err(SecretError::Unset {
                var: self.env.clone(),
            }),
        }
    }

    /// Whether the variable is set, without reading it into a [`Secret`].
    pub fn is_available(&self) -> bool {
        std::env::var_os(&self.env).is_some_and(|v| !v.is_empty())
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "env:{}", self.env)
    }
}

/// A resolution failure names the variable, never a value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret variable {var} is not set in steward's environment")]
    Unset { var: String },
    #[error("secret variable {var} is set but empty")]
    Empty { var: String },
}

/// A secret value. It cannot be printed by accident: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends it (an HTTP header, a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A short keyed fingerprint of a value: HMAC-SHA256 under steward's own key, first 16 hex
/// characters. Keyed so that low-entropy values (a port, "true") cannot be guessed back
/// from a fingerprint shown in a plan or stored in a Vercel variable's comment.
pub fn fingerprint(key: &Secret, value: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("hunter2-very-secret");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{secret}").contains("hunter2"));
    }

    #[test]
    fn fingerprints_depend_on_the_key_and_the_value() {
        let a = Secret::new("key-a");
        let b = Secret::new("key-b");
        assert_eq!(fingerprint(&a, "x"), fingerprint(&a, "x"));
        assert_ne!(fingerprint(&a, "x"), fingerprint(&b, "x"));
        assert_ne!(fingerprint(&a, "x"), fingerprint(&a, "y"));
        assert_eq!(fingerprint(&a, "x").len(), 16);
    }

    #[test]
    fn an_unset_variable_is_named_in_the_error() {
        let err = SecretRef::env("STEWARD_TEST_SURELY_UNSET_VAR")
            .resolve()
            .expect_err("unset");
        assert!(err.to_string().contains("STEWARD_TEST_SURELY_UNSET_VAR"));
    }
}
