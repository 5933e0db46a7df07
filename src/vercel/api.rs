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
