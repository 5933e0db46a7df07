//! What a change to the fleet repository touches, for `steward plan --changed-since REV`:
//! clients whose manifest changed, clients whose merged spec changed because `fleet.yaml`
//! defaults they inherit changed, and clients whose target schema reaches a migration
//! that was added or changed. Deleted and renamed manifests are reported. An edited
//! `.up.sql` that already existed at REV is an error: applied migrations are immutable.
//!
//! The old side is read from Git itself (`git archive REV`), loaded with the same loader
//! as the new side, and compared client by client, so "what changed" means what steward
//! would actually do differently, not which lines moved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::load::{Fleet, LoadOptions, load};
use crate::migrations::Version;

/// The clients a change touches, and what else it did.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// The commit the change is measured from (the merge base with REV).
    pub base: String,
    /// Clients to plan, each with why.
    pub clients: BTreeMap<String, Vec<String>>,
    /// Manifests removed: steward deletes nothing, so these clients are simply no longer
    /// managed; their deployments and databases stay as they are.
    pub deleted: Vec<String>,
    /// Manifests renamed, old name → new name.
    pub renamed: Vec<(String, String)>,
    /// Migration files that existed at the base and were edited or removed.
    pub edited_migrations: Vec<String>,
}

impl ChangeSet {
    /// Lines for the top of a plan: deletions, renames, and edited migrations.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for name in &self.deleted {
            notes.push(format!(
                "client `{name}`: manifest deleted; steward stops managing it and removes nothing"
            ));
        }
        for (from, to) in &self.renamed {
            notes.push(format!(
                "client `{from}` renamed to `{to}`: `{to}` must be adopted (`steward adopt {to}`) before it can be applied"
            ));
        }
        notes
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangedError {
    #[error("--changed-since: {0}")]
    Git(String),
    #[error("--changed-since: the fleet at {rev} does not load: {message}")]
    OldFleet { rev: String, message: String },
}

fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, ChangedError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ChangedError::Git(format!("cannot run git: {e}")))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(ChangedError::Git(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn git_text(dir: &Path, args: &[&str]) -> Result<String, ChangedError> {
    git(dir, args).map(|out| String::from_utf8_lossy(&out).trim().to_owned())
}

/// Compare the fleet as it is now (the working tree) with the fleet at the merge base of
/// `rev` and HEAD.
pub fn changed_since(fleet: &Fleet, rev: &str) -> Result<ChangeSet, ChangedError> {
    let fleet_dir = std::fs::canonicalize(&fleet.dir).unwrap_or_else(|_| fleet.dir.clone());
    let root = PathBuf::from(git_text(&fleet_dir, &["rev-parse", "--show-toplevel"])?);
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    git_text(
        &root,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )
    .map_err(|_| ChangedError::Git(format!("`{rev}` is not a commit in {}", root.display())))?;
    let base = git_text(&root, &["merge-base", rev, "HEAD"])
        .or_else(|_| git_text(&root, &["rev-parse", rev]))?;
    let migrations_dir =
        std::fs::canonicalize(&fleet.catalog.dir).unwrap_or_else(|_| fleet.catalog.dir.clone());
    let clients_dir = fleet_dir.join("clients");
    let relative = |p: &Path| p.strip_prefix(&root).map(Path::to_path_buf).ok();

    let mut set = ChangeSet {
        base: base.clone(),
        ..ChangeSet::default()
    };
    let diff = git_text(&root, &["diff", "--name-status", "-M", &base, "--"])?;
    let mut fleet_file_changed = false;
    let mut migration_changes: Vec<(Version, String)> = Vec::new();
    for line in diff.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let (status, path, renamed_to) = match fields.as_slice() {
            [status, path] => (*status, root.join(path), None),
            [status, from, to] => (*status, root.join(from), Some(root.join(to))),
            _ => continue,
        };
        let kind = status.chars().next().unwrap_or('M');
        let client_of = |p: &Path| {
            (p.parent() == Some(clients_dir.as_path())
                && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .then(|| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
            .flatten()
        };
        if let Some(name) = client_of(&path) {
            match (kind, renamed_to.as_deref().and_then(client_of)) {
                ('D', _) => set.deleted.push(name),
                ('R', Some(to)) => {
                    set.renamed.push((name, to.clone()));
                    reason(&mut set, &to, "manifest renamed".to_owned());
                }
                ('A', _) => reason(&mut set, &name, "manifest added".to_owned()),
                _ => reason(&mut set, &name, "manifest changed".to_owned()),
            }
            continue;
        }
        if path == fleet_dir.join("fleet.yaml") {
            fleet_file_changed = true;
            continue;
        }
        for p in std::iter::once(&path).chain(renamed_to.as_ref()) {
            if !p.starts_with(&migrations_dir) {
                continue;
            }
            let file = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some(version) = file.get(..14).and_then(|v| v.parse::<Version>().ok()) else {
                continue;
            };
            // Only the `.up.sql` is checksummed and applied; editing it after it existed
            // means clients that ran it and clients that will run it differ silently.
            if file.ends_with(".up.sql") && matches!(kind, 'M' | 'D' | 'R') {
                set.edited_migrations.push(
                    relative(p)
                        .unwrap_or_else(|| p.clone())
                        .display()
                        .to_string(),
                );
            }
            migration_changes.push((version, file.to_owned()));
        }
    }

    if fleet_file_changed {
        for (name, why) in merged_spec_changes(fleet, &root, &fleet_dir, &base)? {
            reason(&mut set, &name, why);
        }
    }
    for (name, client) in &fleet.clients {
        let target = &client.config.database.schema_version;
        for (version, file) in &migration_changes {
            if version <= target {
                reason(
                    &mut set,
                    name,
                    format!("migration {file} changed (target {target})"),
                );
            }
        }
    }
    // A client whose manifest was deleted has nothing left to plan.
    set.clients
        .retain(|name, _| fleet.clients.contains_key(name));
    set.deleted.sort();
    set.edited_migrations.sort();
    set.edited_migrations.dedup();
    Ok(set)
}

fn reason(set: &mut ChangeSet, client: &str, why: String) {
    let reasons = set.clients.entry(client.to_owned()).or_default();
    if !reasons.contains(&why) {
        reasons.push(why);
    }
}

/// Load the fleet as it was at `base` (from `git archive`) and name the clients whose
/// merged spec differs: the ones that inherit a changed default, or all of them when
/// fleet-wide settings changed.
fn merged_spec_changes(
    fleet: &Fleet,
    root: &Path,
    fleet_dir: &Path,
    base: &str,
) -> Result<Vec<(String, String)>, ChangedError> {
    let rel = fleet_dir
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let old_root = tempfile::tempdir().map_err(|e| ChangedError::Git(e.to_string()))?;
    let archive = git(root, &["archive", "--format=tar", base])?;
    let mut tar = Command::new("tar")
        .args(["-x", "-C"])
        .arg(old_root.path())
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| ChangedError::Git(format!("cannot run tar: {e}")))?;
    if let Some(mut stdin) = tar.stdin.take() {
        use std::io::Write as _;
        stdin
            .write_all(&archive)
            .map_err(|e| ChangedError::Git(format!("tar: {e}")))?;
    }
    tar.wait()
        .map_err(|e| ChangedError::Git(format!("tar: {e}")))?;
    let old_dir = old_root.path().join(rel);
    let old = load(&old_dir, LoadOptions::default());
    let Some(old_fleet) = old.fleet else {
        let message = old
            .diagnostics
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| "fleet.yaml is missing".to_owned());
        return Err(ChangedError::OldFleet {
            rev: base.to_owned(),
            message,
        });
    };
    let fleet_wide = |f: &Fleet| {
        let mut spec = serde_json::to_value(&f.manifest.spec).unwrap_or_default();
        if let Some(map) = spec.as_object_mut() {
            map.remove("defaults");
            map.remove("migrations");
        }
        spec
    };
    let everything = fleet_wide(fleet) != fleet_wide(&old_fleet);
    let mut changed = Vec::new();
    for (name, client) in &fleet.clients {
        let now = serde_json::to_value(&client.spec).unwrap_or_default();
        let before = old_fleet
            .clients
            .get(name)
            .map(|c| serde_json::to_value(&c.spec).unwrap_or_default());
        if everything {
            changed.push((
                name.clone(),
                "fleet-wide settings in fleet.yaml changed".to_owned(),
            ));
        } else if before.as_ref() != Some(&now) {
            changed.push((
                name.clone(),
                "inherits changed fleet.yaml defaults".to_owned(),
            ));
        }
    }
    Ok(changed)
}
