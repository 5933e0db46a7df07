//! Who puts a build on production: a push to the production branch builds every project
//! linked to the repository (Vercel's Git integration), live at once when the project
//! auto-assigns its production domains and staged otherwise; and the project setting
//! that decides it (`PATCH /v9/projects/{id}` `{autoAssignCustomDomains}`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::state::{Deployment, Project, State, now_ms};

/// The commit a push carries, as Vercel copies it into a Git deployment's `meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    pub sha: String,
    /// The GitHub login of the author (also the deployment's `creator`).
    pub author: String,
    #[serde(default)]
    pub author_name: Option<String>,
    #[serde(default)]
    pub message: String,
    /// The branch pushed to; the production branch (`main`) when absent.
    #[serde(default = "production_branch")]
    pub branch: String,
}

fn production_branch() -> String {
    PRODUCTION_BRANCH.to_owned()
}

/// `POST /_emulator/push`: a commit pushed to the production branch. Every project whose
/// `link.productionBranch` is that branch gets a production build; `projects` (names)
/// narrows it to some. Answers the builds made, project by project.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Push {
    #[serde(flatten)]
    pub commit: Commit,
    #[serde(default)]
    pub projects: Option<Vec<String>>,
}

/// The production branch every emulated project is linked to.
pub const PRODUCTION_BRANCH: &str = "main";

impl State {
    /// Build the pushed commit on every linked project, as Vercel's Git integration does:
    /// a `source: git` production deployment that takes the domains when READY if the
    /// project auto-assigns them (its `settle` does that), and stays STAGED otherwise.
    pub fn push(&mut self, push: &Push) -> Result<Vec<(String, String)>, String> {
        let sha = &push.commit.sha;
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "sha must be a 40-character commit SHA, got `{sha}`"
            ));
        }
        if push.commit.branch != PRODUCTION_BRANCH {
            // A push elsewhere makes preview builds, which steward never looks at.
            return Ok(Vec::new());
        }
        let mut targets: Vec<(String, String)> = self
            .projects
            .values()
            .filter(|p| {
                push.projects
                    .as_ref()
                    .is_none_or(|names| names.contains(&p.name))
            })
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect();
        targets.sort_by(|a, b| a.1.cmp(&b.1));
        let mut built = Vec::new();
        for (project_id, name) in targets {
            let id = self.next_id("dpl");
            let hash: String = id.chars().rev().take(9).collect();
            let deployment = Deployment {
                id: id.clone(),
                project_id,
                name: name.clone(),
                host: format!("{name}-{hash}.vercel.app"),
                fails: self.faults.fail_shas.contains(sha),
                stuck: self.faults.stuck_shas.contains(sha),
                sha: sha.clone(),
                git_ref: push.commit.branch.clone(),
                created_at: now_ms(),
                target: Some("production".to_owned()),
                // A Git build follows the project's setting, read when it is READY.
                auto_assign: true,
                promoted: false,
                settled: false,
                source: "git".to_owned(),
                commit: Some(push.commit.clone()),
                shares: Vec::new(),
            };
            self.deployments.insert(id.clone(), deployment);
            built.push((name, id));
        }
        Ok(built)
    }
}

/// The deployment's `creator`: the commit's author for a Git push, the token's user for
/// a build made through the API.
pub fn creator(d: &Deployment) -> Value {
    match &d.commit {
        Some(commit) => json!({
            "uid": format!("usr_{}", commit.author),
            "username": commit.author,
        }),
        None => {
            json!({"uid": "usr_emulator", "username": "steward", "email": "steward@emulator.invalid"})
        }
    }
}

/// The deployment's `meta`: the Git keys Vercel sets on a Git deployment, all strings.
pub fn meta(d: &Deployment, project: Option<&Project>) -> Value {
    let repo_id = project.map_or(0, |p| p.repo_id).to_string();
    let repo = project.map_or_else(|| d.name.clone(), |p| p.name.clone());
    let mut meta = json!({
        "githubCommitSha": d.sha,
        "githubCommitRef": d.git_ref,
        "githubCommitRepoId": repo_id,
        "githubDeployment": "1",
        "githubCommitOrg": "emulator",
        "githubCommitRepo": repo,
        "githubOrg": "emulator",
        "githubRepo": repo,
        "githubRepoId": repo_id,
        "githubRepoOwnerType": "Organization",
    });
    if let (Some(commit), Value::Object(map)) = (&d.commit, &mut meta) {
        map.insert(
            "githubCommitAuthorLogin".into(),
            commit.author.clone().into(),
        );
        map.insert(
            "githubCommitAuthorName".into(),
            commit
                .author_name
                .clone()
                .unwrap_or_else(|| commit.author.clone())
                .into(),
        );
        map.insert("githubCommitMessage".into(), commit.message.clone().into());
    }
    meta
}

/// `PATCH /v9/projects/{idOrName}`: of the project's settings the emulator keeps
/// `autoAssignCustomDomains`; the answer is the project, as Vercel's `updateProject`.
pub fn update_project(state: &mut State, project_id: &str, input: &Value) -> Result<(), String> {
    let auto_assign = match input.get("autoAssignCustomDomains") {
        None => None,
        Some(Value::Bool(on)) => Some(*on),
        Some(other) => {
            return Err(format!(
                "Invalid request: `autoAssignCustomDomains` should be a boolean, got {other}"
            ));
        }
    };
    let Some(project) = state.projects.get_mut(project_id) else {
        return Err(format!("Could not find the project: {project_id}"));
    };
    if let Some(on) = auto_assign {
        project.auto_assign = on;
    }
    project.updated_at = now_ms();
    Ok(())
}
