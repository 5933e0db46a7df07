//! Turning a client's manifest into the planner's `Desired`: env values are resolved
//! from steward's environment and reduced to keyed fingerprints; the values themselves
//! stay in `EnvValues` (as `Secret`s) for the one step that writes them.

use crate::manifest::{Client, CodeVersion, EnvValue};
use crate::plan::{Desired, DesiredEnv};
use crate::secret::{Secret, SecretError, SecretRef, fingerprint};

/// The env values to write, by key: value, sensitive, and the secret reference it came
/// from (recorded with the variable, so an undo can re-read a value Vercel will not give
/// back). Never printed: `Secret` redacts.
#[derive(Debug, Clone, Default)]
pub struct EnvValues(pub Vec<(String, Secret, bool, Option<String>)>);

impl EnvValues {
    pub fn get(&self, key: &str) -> Option<&Secret> {
        self.0.iter().find(|(k, ..)| k == key).map(|(_, v, ..)| v)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("client {client}: env {key}: {source}")]
    Secret {
        client: String,
        key: String,
        #[source]
        source: SecretError,
    },
    #[error(
        "client {client}: code.version is tag `{tag}`, which needs spec.github.repo to resolve it to a commit"
    )]
    TagWithoutGithub { client: String, tag: String },
    #[error("client {client}: {message}")]
    Tag { client: String, message: String },
}

/// Build the desired state. `sha` is the resolved commit (a tag already looked up).
pub fn build(
    client: &Client,
    key: &Secret,
    sha: String,
    revision: Option<String>,
) -> Result<(Desired, EnvValues), DesiredError> {
    let config = &client.config;
    let mut env = Vec::new();
    let mut values = EnvValues::default();
    for (name, value) in &config.env {
        let (secret, sensitive, source) = match value {
            EnvValue::Literal(text) => (Secret::new(text.clone()), false, None),
            EnvValue::Secret(reference) => {
                let secret = SecretRef::env(reference.env.clone())
                    .resolve()
                    .map_err(|source| DesiredError::Secret {
                        client: config.name.clone(),
                        key: name.clone(),
                        source,
                    })?;
                (secret, reference.sensitive, Some(reference.env.clone()))
            }
        };
        env.push(DesiredEnv {
            key: name.clone(),
            fingerprint: fingerprint(key, secret.expose()),
            sensitive,
        });
        values.0.push((name.clone(), secret, sensitive, source));
    }
    let desired = Desired {
        config: config.clone(),
        sha,
        version: config.code.version.clone(),
        env,
        revision,
    };
    Ok((desired, values))
}

/// The commit a manifest's version names, without a network call when it is a SHA.
pub fn literal_sha(version: &CodeVersion) -> Option<String> {
    version.sha().map(str::to_owned)
}
