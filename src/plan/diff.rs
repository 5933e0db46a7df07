//! The env diff: desired fingerprints against what Vercel holds, without any value.

use super::input::{DesiredEnv, ObservedEnv};
use super::step::{EnvAction, EnvChange};

/// Compare desired and observed env on the production target.
///
/// Only variables steward created (those carrying its fingerprint comment) are removed
/// when they leave the manifest: a variable someone else added — a Vercel integration's
/// `POSTGRES_URL`, say — is not steward's to delete.
pub fn env_changes(desired: &[DesiredEnv], observed: &[ObservedEnv]) -> Vec<EnvChange> {
    let mut changes = Vec::new();
    for want in desired {
        let have = observed.iter().find(|o| o.key == want.key);
        let change = |action, drift| EnvChange {
            key: want.key.clone(),
            action,
            sensitive: want.sensitive,
            from: (!want.sensitive)
                .then(|| have.and_then(|h| h.fingerprint.clone()))
                .flatten(),
            to: (!want.sensitive).then(|| want.fingerprint.clone()),
            drift,
        };
        match have {
            None => changes.push(change(EnvAction::Add, false)),
            Some(have) if have.fingerprint.as_deref() != Some(want.fingerprint.as_str()) => {
                changes.push(change(EnvAction::Change, false));
            }
            Some(have) if have.drifted || have.sensitive != want.sensitive => {
                changes.push(change(EnvAction::Change, have.drifted));
            }
            Some(_) => {}
        }
    }
    for have in observed {
        let managed = have.fingerprint.is_some();
        if managed && !desired.iter().any(|d| d.key == have.key) {
            changes.push(EnvChange {
                key: have.key.clone(),
                action: EnvAction::Remove,
                sensitive: have.sensitive,
                from: if have.sensitive {
                    None
                } else {
                    have.fingerprint.clone()
                },
                to: None,
                drift: false,
            });
        }
    }
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    changes
}
