//! Inbound GitHub webhooks: the `X-Hub-Signature-256` check (HMAC-SHA256 of the raw body
//! with the shared secret, compared in constant time) and the one event steward acts on,
//! a push to the repository's default branch.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not `sha256=<hex>`")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// Check `header` (`sha256=<hex>`) against the raw `body`, before any parsing.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Malformed)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[derive(Debug, Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
    default_branch: String,
}

/// For a `push` event: `Some(repository)` when it moved the default branch.
pub fn push_to_default_branch(body: &[u8]) -> Option<String> {
    let push: Push = serde_json::from_slice(body).ok()?;
    (push.git_ref == format!("refs/heads/{}", push.repository.default_branch))
        .then_some(push.repository.full_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published example ("Validating webhook deliveries").
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const PAYLOAD: &[u8] = b"Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_s_published_test_vector_verifies() {
        assert_eq!(verify_signature(SECRET, PAYLOAD, Some(SIGNATURE)), Ok(()));
    }

    #[test]
    fn a_wrong_missing_or_malformed_signature_is_refused() {
        assert_eq!(
            verify_signature(b"another secret", PAYLOAD, Some(SIGNATURE)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(SECRET, b"Hello, World?", Some(SIGNATURE)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(SECRET, PAYLOAD, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(
                SECRET,
                PAYLOAD,
                Some(&SIGNATURE.replace("sha256=", "sha1="))
            ),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(SECRET, PAYLOAD, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn only_a_push_to_the_default_branch_counts() {
        let push = |r: &str| {
            format!(
                r#"{{"ref":"{r}","repository":{{"full_name":"acme/fleet","default_branch":"main"}}}}"#
            )
        };
        assert_eq!(
            push_to_default_branch(push("refs/heads/main").as_bytes()).as_deref(),
            Some("acme/fleet")
        );
        assert_eq!(
            push_to_default_branch(push("refs/heads/feature").as_bytes()),
            None
        );
        assert_eq!(push_to_default_branch(b"not json"), None);
    }
}
