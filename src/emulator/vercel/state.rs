//! The emulator's state: teams, projects, deployments and env vars, plus injected
//! faults. Deployment life cycle is derived from timestamps on each read (QUEUED →
//! BUILDING → READY/ERROR), so no background task is needed and a restart from a state
//! file picks up where it left off.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub build_ms: u64,
    pub seq: u64,
    pub teams: BTreeSet<String>,
    pub projects: BTreeMap<String, Project>,
    pub deployments: BTreeMap<String, Deployment>,
    #[serde(skip)]
    pub faults: Faults,
    /// Vercel's per-endpoint rate limits (the published ones until changed).
    #[serde(skip)]
    pub limits: super::limits::RateLimits,
    #[serde(skip)]
    pub stats: Stats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub team: Option<String>,
    pub repo_id: u64,
    pub auto_assign: bool,
    pub production: Option<String>,
    pub last_alias_request: Option<Value>,
    pub env: Vec<EnvVar>,
    pub created_at: u64,
    pub updated_at: u64,
    /// Paused through `POST /v1/projects/{id}/pause`: its deployments answer 503.
    #[serde(default)]
    pub paused: bool,
    /// The project's rolling-release configuration (`PATCH .../rolling-release/config`).
    #[serde(default)]
    pub rolling_config: Option<super::rolling::Config>,
    /// The project's latest rolling release, whatever its state.
    #[serde(default)]
    pub rolling_release: Option<super::rolling::Release>,
    /// Rolling releases are a paid feature: a project on a plan without them answers
    /// every rolling-release call with Vercel's refusal (set through the admin API).
    #[serde(default)]
    pub rolling_unavailable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub host: String,
    pub sha: String,
    pub git_ref: String,
    pub created_at: u64,
    pub target: Option<String>,
    /// Whether this build auto-assigns production domains when READY.
    pub auto_assign: bool,
    pub fails: bool,
    pub stuck: bool,
    /// Promoted at least once (served production traffic).
    pub promoted: bool,
    /// Handled when it reached READY (auto-assigned or staged).
    pub settled: bool,
    pub source: String,
    /// The pushed commit, for a build Vercel's Git integration made (`source: git`).
    #[serde(default)]
    pub commit: Option<super::promotion::Commit>,
    /// When this deployment's share of the project's traffic changed, and to what
    /// percent: the synthetic runtime logs are drawn from it.
    #[serde(default)]
    pub shares: Vec<super::traffic::Share>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvVar {
    pub id: String,
    pub key: String,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub target: Vec<String>,
    pub comment: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// Faults injected through `/_emulator/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Added to every API call.
    pub latency_ms: u64,
    /// The next N API calls answer 429 with `Retry-After: retry_after_secs`.
    pub rate_limit: u32,
    pub retry_after_secs: u64,
    /// The next N API calls whose path contains `error_path` (all when empty) answer 500.
    pub errors: u32,
    pub error_path: String,
    /// Builds of these shas end in ERROR.
    pub fail_shas: BTreeSet<String>,
    /// Builds of these shas never leave BUILDING.
    pub stuck_shas: BTreeSet<String>,
    /// Deployments of these shas answer their health path with this status.
    pub unhealthy: BTreeMap<String, u16>,
    /// Deployments of these shas turn unhealthy (503) once they serve production, as a
    /// bug that only shows under real traffic would.
    pub unhealthy_in_production: BTreeSet<String>,
    /// The next N env writes are refused with 403 (to test all-or-nothing env changes).
    pub env_write_errors: u32,
    /// Env writes allowed before `env_write_errors` start counting.
    pub env_writes_before_error: u32,
    /// Synthetic traffic per sha (`*` for any other sha): what a deployment of it would
    /// serve at 100% of the project's traffic. Its runtime logs show its share of it.
    pub traffic: BTreeMap<String, super::traffic::Traffic>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub by_route: BTreeMap<String, u64>,
}

impl State {
    pub fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        // Vercel ids are base62-ish; a counter in a fixed-width shape keeps them unique and sortable.
        format!("{prefix}_{:024x}", self.seq * 0x9e37_79b9 + 0x1000)
    }

    pub fn create_project(&mut self, name: &str, team: Option<String>) -> String {
        if let Some(existing) = self
            .projects
            .values()
            .find(|p| p.name == name && p.team == team)
        {
            return existing.id.clone();
        }
        let id = self.next_id("prj");
        let now = now_ms();
        let repo_id = 100_000_000 + self.seq;
        self.projects.insert(
            id.clone(),
            Project {
                id: id.clone(),
                name: name.to_owned(),
                team,
                repo_id,
                auto_assign: true,
                production: None,
                last_alias_request: None,
                env: Vec::new(),
                created_at: now,
                updated_at: now,
                paused: false,
                rolling_config: None,
                rolling_release: None,
                rolling_unavailable: false,
            },
        );
        id
    }

    /// Find a project by id or name within a scope.
    pub fn project_id(&self, id_or_name: &str, team: Option<&str>) -> Option<String> {
        self.projects
            .values()
            .find(|p| (p.id == id_or_name || p.name == id_or_name) && p.team.as_deref() == team)
            .map(|p| p.id.clone())
    }

    /// Find a project by id or name in any scope (admin calls name it so).
    pub fn project_id_any_scope(&self, id_or_name: &str) -> Option<String> {
        self.projects
            .values()
            .find(|p| p.id == id_or_name || p.name == id_or_name)
            .map(|p| p.id.clone())
    }

    pub fn ready_state(&self, d: &Deployment, now: u64) -> &'static str {
        let age = now.saturating_sub(d.created_at);
        // Stuck only while the fault is set, so a test can release the build.
        if d.stuck && self.faults.stuck_shas.contains(&d.sha) {
            if age < self.build_ms / 3 {
                "QUEUED"
            } else {
                "BUILDING"
            }
        } else if age < self.build_ms / 3 {
            "QUEUED"
        } else if age < self.build_ms {
            "BUILDING"
        } else if d.fails {
            "ERROR"
        } else {
            "READY"
        }
    }

    /// Apply what time did: builds that reached READY get production domains when they
    /// auto-assign, or stay STAGED when they do not.
    pub fn settle(&mut self) {
        let now = now_ms();
        let mut ready: Vec<(u64, String)> = self
            .deployments
            .values()
            .filter(|d| !d.settled && matches!(self.ready_state(d, now), "READY" | "ERROR"))
            .map(|d| (d.created_at, d.id.clone()))
            .collect();
        ready.sort();
        for (_, id) in ready {
            let Some(d) = self.deployments.get(&id).cloned() else {
                continue;
            };
            if let Some(dep) = self.deployments.get_mut(&id) {
                dep.settled = true;
            }
            if self.ready_state(&d, now) != "READY" {
                continue;
            }
            let project_auto = self
                .projects
                .get(&d.project_id)
                .is_some_and(|p| p.auto_assign);
            if d.target.as_deref() == Some("production") && d.auto_assign && project_auto {
                self.make_production(&d.project_id, &id, "promote");
            }
        }
        super::rolling::settle(self, now);
    }

    /// Point production at a deployment and record the alias request.
    pub fn make_production(&mut self, project_id: &str, deployment_id: &str, kind: &str) {
        let now = now_ms();
        let Some(project) = self.projects.get_mut(project_id) else {
            return;
        };
        let from = project.production.clone();
        project.production = Some(deployment_id.to_owned());
        let mut request = json!({
            "toDeploymentId": deployment_id,
            "jobStatus": "succeeded",
            "requestedAt": now,
            "type": kind,
        });
        // Required by the schema even for a project's first promotion: empty then.
        if let Value::Object(map) = &mut request {
            map.insert(
                "fromDeploymentId".to_owned(),
                Value::from(from.unwrap_or_default()),
            );
        }
        project.last_alias_request = Some(request);
        project.auto_assign = kind != "rollback";
        project.updated_at = now;
        if let Some(d) = self.deployments.get_mut(deployment_id) {
            d.promoted = true;
        }
        self.record_shares(project_id, now);
    }

    /// Each deployment's percent of the project's traffic now: production's 100, or the
    /// split of an active rolling release.
    pub fn shares(&self, project_id: &str) -> BTreeMap<String, u8> {
        let mut shares = BTreeMap::new();
        let Some(project) = self.projects.get(project_id) else {
            return shares;
        };
        if let Some(release) = project
            .rolling_release
            .as_ref()
            .filter(|r| r.state == super::rolling::ReleaseState::Active)
        {
            let canary = release.canary_percent();
            if let Some(current) = &release.current {
                shares.insert(current.clone(), 100 - canary);
            }
            shares.insert(release.canary.clone(), canary);
        } else if let Some(production) = &project.production {
            shares.insert(production.clone(), 100);
        }
        shares
    }

    /// Note every change of share in the project's deployments, from `now` on.
    pub fn record_shares(&mut self, project_id: &str, now: u64) {
        let shares = self.shares(project_id);
        for d in self
            .deployments
            .values_mut()
            .filter(|d| d.project_id == project_id)
        {
            let percent = shares.get(&d.id).copied().unwrap_or(0);
            let last = d.shares.last().map_or(0, |s| s.percent);
            if percent != last {
                d.shares.push(super::traffic::Share {
                    from_ms: now,
                    percent,
                });
            }
        }
    }

    pub fn production_alias(project: &Project) -> String {
        format!("{}.vercel.app", project.name)
    }

    /// The deployment JSON (v13 shape; v6 list items are a subset with `uid`).
    pub fn deployment_json(&self, d: &Deployment) -> Value {
        let now = now_ms();
        let state = self.ready_state(d, now);
        let project = self.projects.get(&d.project_id);
        let is_production = project.and_then(|p| p.production.as_deref()) == Some(d.id.as_str());
        let substate = if d.promoted { "PROMOTED" } else { "STAGED" };
        let mut alias = vec![d.host.clone()];
        if is_production && let Some(p) = project {
            alias.push(State::production_alias(p));
        }
        let building_at = d.created_at + self.build_ms / 3;
        let ready_at = d.created_at + self.build_ms;
        let repo_id = project.map_or(0, |p| p.repo_id);
        json!({
            "id": d.id,
            "uid": d.id,
            "name": d.name,
            "url": d.host,
            "projectId": d.project_id,
            "project": {"id": d.project_id, "name": d.name, "framework": "nextjs"},
            "created": d.created_at,
            "createdAt": d.created_at,
            "buildingAt": building_at,
            "bootedAt": d.created_at,
            "ready": if state == "READY" { Value::from(ready_at) } else { Value::Null },
            "readyState": state,
            "state": state,
            "status": state,
            "readySubstate": if state == "READY" { Value::from(substate) } else { Value::Null },
            "type": "LAMBDAS",
            "target": d.target,
            "source": d.source,
            "version": 2,
            "public": false,
            "plan": "pro",
            "createdIn": "iad1",
            "regions": ["iad1"],
            "ownerId": project.and_then(|p| p.team.clone()).unwrap_or_else(|| "usr_emulator".to_owned()),
            "creator": super::promotion::creator(d),
            "inspectorUrl": format!("https://vercel.com/emulator/{}/{}", d.name, d.id),
            "meta": super::promotion::meta(d, project),
            "gitSource": {"type": "github", "repoId": repo_id, "ref": d.git_ref, "sha": d.sha},
            "alias": alias,
            "automaticAliases": [d.host.clone()],
            "aliasAssigned": is_production || d.promoted,
            "aliasAssignedAt": if d.promoted { Value::from(ready_at) } else { Value::Null },
            "aliasError": Value::Null,
            "aliasFinal": Value::Null,
            "autoAssignCustomDomains": d.auto_assign,
            "isRollbackCandidate": d.promoted && !is_production && state == "READY",
            "errorCode": if state == "ERROR" { Value::from("BUILD_FAILED") } else { Value::Null },
            "errorMessage": if state == "ERROR" { Value::from(format!("Command \"npm run build\" exited with 1 (commit {})", &d.sha[..d.sha.len().min(7)])) } else { Value::Null },
            "errorStep": if state == "ERROR" { Value::from("build") } else { Value::Null },
            "env": [],
            "build": {"env": []},
            "routes": Value::Null,
            "isInConcurrentBuildsQueue": false,
            "isInSystemBuildsQueue": false,
            "buildSkipped": false,
            "projectSettings": {},
        })
    }

    /// The deployment JSON with optional, non-nullable fields left out rather than null,
    /// as the official schema requires (its conformance test checks this).
    pub fn deployment_view(&self, d: &Deployment) -> Value {
        let mut json = self.deployment_json(d);
        if let Value::Object(map) = &mut json {
            for key in OMIT_WHEN_NULL {
                if map.get(*key).is_some_and(Value::is_null) {
                    map.remove(*key);
                }
            }
        }
        json
    }

    pub fn env_json(env: &EnvVar, decrypt: bool) -> Value {
        let value = match env.kind.as_str() {
            "sensitive" => String::new(),
            "encrypted" if !decrypt => format!("enc:{}", hex_digest(&env.value)),
            _ => env.value.clone(),
        };
        json!({
            "id": env.id,
            "key": env.key,
            "value": value,
            "type": env.kind,
            "target": env.target,
            "comment": env.comment,
            "decrypted": decrypt && env.kind != "sensitive",
            "configurationId": Value::Null,
            "createdAt": env.created_at,
            "updatedAt": env.updated_at,
            "createdBy": "usr_emulator",
            "updatedBy": "usr_emulator",
            "edgeConfigId": Value::Null,
            "edgeConfigTokenId": Value::Null,
            "contentHint": Value::Null,
            "securityIssues": [],
        })
    }

    pub fn project_json(&self, p: &Project) -> Value {
        // The project's deployment summaries (targets.production, latestDeployments).
        let summary = |d: &Deployment| {
            let mut summary = self.deployment_view(d);
            if let Value::Object(map) = &mut summary {
                map.insert("deploymentHostname".to_owned(), Value::from(d.host.clone()));
                map.insert("userId".to_owned(), Value::from("usr_emulator"));
                map.insert("private".to_owned(), Value::from(false));
                if self.ready_state(d, now_ms()) == "READY" {
                    map.insert(
                        "readyAt".to_owned(),
                        Value::from(d.created_at + self.build_ms),
                    );
                }
            }
            summary
        };
        let production = p
            .production
            .as_ref()
            .and_then(|id| self.deployments.get(id))
            .map(summary);
        let latest: Vec<Value> = {
            let mut ds: Vec<&Deployment> = self
                .deployments
                .values()
                .filter(|d| d.project_id == p.id)
                .collect();
            ds.sort_by_key(|d| std::cmp::Reverse(d.created_at));
            ds.into_iter().take(5).map(summary).collect()
        };
        json!({
            "accountId": p.team.clone().unwrap_or_else(|| "usr_emulator".to_owned()),
            "id": p.id,
            "name": p.name,
            "framework": "nextjs",
            "nodeVersion": "20.x",
            "directoryListing": false,
            "resourceConfig": {"functionDefaultMemoryType": "standard", "functionDefaultRegions": ["iad1"]},
            "defaultResourceConfig": {"functionDefaultMemoryType": "standard", "functionDefaultRegions": ["iad1"]},
            "createdAt": p.created_at,
            "updatedAt": p.updated_at,
            "live": false,
            "autoAssignCustomDomains": p.auto_assign,
            "paused": p.paused,
            // Required by the SDK: the project's domains, and its retention policy.
            "alias": [{
                "domain": State::production_alias(p),
                "environment": "production",
                "target": "PRODUCTION",
                "deployment": Value::Null,
                "createdAt": p.created_at,
            }],
            "deploymentExpiration": {
                "expirationDays": 180,
                "expirationDaysProduction": 365,
                "expirationDaysCanceled": 30,
                "expirationDaysErrored": 90,
                "deploymentsToKeep": 10,
            },
            "link": {
                "type": "github",
                "org": "emulator",
                "repo": p.name,
                "repoId": p.repo_id,
                "productionBranch": "main",
                "gitCredentialId": "cred_emulator",
                "deployHooks": [],
                "createdAt": p.created_at,
            },
            "targets": {"production": production},
            "latestDeployments": latest,
            "lastAliasRequest": p.last_alias_request,
            "env": p.env.iter().map(|e| State::env_json(e, false)).collect::<Vec<_>>(),
        })
    }
}

const OMIT_WHEN_NULL: &[&str] = &[
    "errorCode",
    "errorStep",
    "ready",
    "readySubstate",
    "aliasAssignedAt",
    "aliasFinal",
];

fn hex_digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}
