//! The parts of Vercel's JSON that steward reads, as plain types. Unknown fields are
//! ignored: the API adds fields freely; the emulator's conformance test pins the shapes.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub link: Option<Link>,
    #[serde(default)]
    pub targets: Option<Targets>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub auto_assign_custom_domains: Option<bool>,
    #[serde(default)]
    pub last_alias_request: Option<AliasRequest>,
    /// Whether the project is paused (serves no traffic); absent means not paused.
    #[serde(default)]
    pub paused: Option<bool>,
}

impl Project {
    pub fn production(&self) -> Option<&Deployment> {
        self.targets.as_ref().and_then(|t| t.production.as_ref())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub repo_id: Option<serde_json::Value>,
    pub production_branch: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Targets {
    pub production: Option<Deployment>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AliasRequest {
    pub from_deployment_id: Option<String>,
    pub to_deployment_id: Option<String>,
    pub job_status: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `id` in v13 responses; list items (v6) call it `uid`.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub uid: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub ready_state: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub ready_substate: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub meta: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub created_at: Option<u64>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub is_rollback_candidate: Option<bool>,
    /// Who made the deployment (for a Git push, Vercel's user of the commit's author).
    #[serde(default)]
    pub creator: Option<Creator>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Creator {
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

impl Deployment {
    pub fn sha(&self) -> Option<&str> {
        self.meta
            .as_ref()
            .and_then(|m| m.get("githubCommitSha"))
            .map(String::as_str)
    }

    pub fn state(&self) -> &str {
        self.ready_state
            .as_deref()
            .or(self.state.as_deref())
            .unwrap_or("QUEUED")
    }

    /// Who made it and when, from its metadata: a Git push names the commit's author
    /// (`githubCommitAuthorLogin`) and message; otherwise the creator's user name.
    pub fn origin(&self) -> crate::plan::Origin {
        let meta = |key: &str| self.meta.as_ref().and_then(|m| m.get(key)).cloned();
        let creator = self
            .creator
            .as_ref()
            .and_then(|c| c.username.clone().or_else(|| c.uid.clone()));
        crate::plan::Origin {
            by: meta("githubCommitAuthorLogin").or(creator),
            at: self
                .created_at
                .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64)),
            message: meta("githubCommitMessage"),
        }
    }

    /// Fill `id` from `uid` for list items.
    pub(crate) fn normalized(mut self) -> Self {
        if self.id.is_empty()
            && let Some(uid) = self.uid.take()
        {
            self.id = uid;
        }
        self
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentList {
    pub deployments: Vec<Deployment>,
    pub pagination: Option<Pagination>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pagination {
    pub next: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub id: String,
    pub key: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub target: serde_json::Value,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub updated_at: Option<u64>,
}

impl EnvVar {
    pub fn targets_production(&self) -> bool {
        match &self.target {
            serde_json::Value::Array(items) => items.iter().any(|t| t == "production"),
            serde_json::Value::String(t) => t == "production",
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vercel adds fields and enum values without a new API version; a pass must keep
    /// reading the fields it needs from such an answer.
    #[test]
    fn an_unknown_field_or_enum_value_in_a_project_does_not_break_parsing() {
        let body = serde_json::json!({
            "id": "prj_1",
            "name": "shop-web",
            "someFieldVercelAddsNextYear": {"nested": [1, 2, 3]},
            "paused": false,
            "link": {"type": "gitea", "repoId": 7, "productionBranch": "main", "newLinkField": true},
            "targets": {"production": {
                "id": "dpl_1",
                "url": "shop-web-1.vercel.app",
                "readyState": "HIBERNATING",
                "readySubstate": "SOMETHING_NEW",
                "target": "staging",
                "meta": {"githubCommitSha": "a1"},
                "brandNewObject": {"x": 1},
            }},
            "env": [{"id": "env_1", "key": "A", "type": "quantum-encrypted",
                     "target": ["production", "some-new-target"], "vaultRef": "v1"}],
            "lastAliasRequest": {"fromDeploymentId": "dpl_0", "toDeploymentId": "dpl_1",
                                  "jobStatus": "teleporting", "type": "canary", "extra": 1},
        });
        let project: Project = serde_json::from_value(body).expect("parses");
        let production = project.production().expect("production");
        assert_eq!(production.sha(), Some("a1"));
        assert_eq!(production.state(), "HIBERNATING");
        assert_eq!(project.env[0].kind, "quantum-encrypted");
        assert!(project.env[0].targets_production());
        assert_eq!(project.paused, Some(false));
        assert_eq!(
            project
                .last_alias_request
                .and_then(|r| r.job_status)
                .as_deref(),
            Some("teleporting")
        );
    }

    #[test]
    fn a_deployment_list_item_with_unknown_fields_still_yields_its_id_and_state() {
        let body = serde_json::json!({
            "deployments": [{"uid": "dpl_9", "state": "NEW_STATE", "url": "x.vercel.app",
                              "createdAt": 1, "checksConclusion": "unheard-of", "extra": []}],
            "pagination": {"count": 1, "next": null, "prev": 1, "newCursor": "c"},
        });
        let list: DeploymentList = serde_json::from_value(body).expect("parses");
        let item = list.deployments[0].clone().normalized();
        assert_eq!(item.id, "dpl_9");
        assert_eq!(item.state(), "NEW_STATE");
    }
}
