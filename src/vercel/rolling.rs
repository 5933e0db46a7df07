//! Rolling releases and runtime logs: the calls a staged rollout makes (configure the
//! project's stages, start a release for a canary, approve the next stage, complete,
//! abort by an instant rollback to the current deployment) and the request counts a
//! stage is judged by. A plan without rolling releases is an answer
//! ([`Availability::Unavailable`]), not an error: steward falls back to promote + bake.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::VercelClient;
use super::error::VercelError;

/// Whether a project can run rolling releases, from its configuration call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Available; the stage percents configured now (empty when not configured).
    Available { stages: Vec<u8> },
    /// Vercel refused the feature for this project (its plan), in Vercel's words.
    Unavailable { code: String, message: String },
}

impl Availability {
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available { .. })
    }
}

/// A release's state; a state Vercel adds later reads as `Other`, never a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReleaseState {
    Active,
    Complete,
    Aborted,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStage {
    pub index: usize,
    pub target_percentage: u8,
    #[serde(default)]
    pub is_final_stage: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentRef {
    pub id: String,
}

/// The rolling release document (the fields steward reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingRelease {
    pub state: ReleaseState,
    #[serde(default)]
    pub canary_deployment: Option<DeploymentRef>,
    #[serde(default)]
    pub current_deployment: Option<DeploymentRef>,
    #[serde(default)]
    pub active_stage: Option<ReleaseStage>,
    #[serde(default)]
    pub stages: Vec<ReleaseStage>,
    #[serde(default)]
    pub current_canary_percentage: Option<u8>,
}

impl RollingRelease {
    pub fn canary_id(&self) -> Option<&str> {
        self.canary_deployment.as_ref().map(|d| d.id.as_str())
    }

    pub fn current_id(&self) -> Option<&str> {
        self.current_deployment.as_ref().map(|d| d.id.as_str())
    }

    /// The canary's share of traffic now.
    pub fn percent(&self) -> u8 {
        self.current_canary_percentage
            .or_else(|| self.active_stage.as_ref().map(|s| s.target_percentage))
            .unwrap_or(0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    rolling_release: Option<RollingRelease>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigAnswer {
    #[serde(default)]
    rolling_release: Option<ConfigBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigBody {
    #[serde(default)]
    stages: Option<Vec<ConfigStage>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigStage {
    target_percentage: u8,
}

/// Requests a deployment served in a window, from its runtime logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub requests: u64,
    /// Answered 5xx.
    pub errors: u64,
}

impl RequestCounts {
    /// The 5xx fraction, `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogLine {
    #[serde(default)]
    response_status_code: Option<i64>,
    #[serde(default)]
    timestamp_in_ms: Option<u64>,
    #[serde(default)]
    source: Option<String>,
}

/// Count the requests among runtime log lines (one JSON object a line) whose time is in
/// `[since_ms, until_ms)`. Lines that are not requests (a `delimiter`, a function's own
/// log without a status) or that do not parse are skipped: a new kind of line must not
/// fail a release.
pub fn count_requests(stream: &[u8], since_ms: u64, until_ms: u64) -> RequestCounts {
    let mut counts = RequestCounts::default();
    for line in stream.split(|b| *b == b'\n') {
        let Ok(line) = serde_json::from_slice::<LogLine>(line) else {
            continue;
        };
        let (Some(status), Some(at)) = (line.response_status_code, line.timestamp_in_ms) else {
            continue;
        };
        if line.source.as_deref() == Some("delimiter") || status <= 0 {
            continue;
        }
        if at < since_ms || at >= until_ms {
            continue;
        }
        counts.requests += 1;
        if status >= 500 {
            counts.errors += 1;
        }
    }
    counts
}

/// Whether an error is Vercel refusing the feature itself (the plan), not a failure.
fn unavailable(err: &VercelError) -> Option<Availability> {
    match err {
        VercelError::Api {
            status,
            code,
            message,
            ..
        } if *status == 402 || code == "plan_not_supported" => Some(Availability::Unavailable {
            code: code.clone(),
            message: message.clone(),
        }),
        _ => None,
    }
}

fn config_path(project_id: &str) -> String {
    format!("/v1/projects/{project_id}/rolling-release/config")
}

fn release_path(project_id: &str, action: &str) -> String {
    format!("/v1/projects/{project_id}/rolling-release{action}")
}

/// The released document of an answer that must have one.
fn document(answer: Answer, path: &str) -> Result<RollingRelease, VercelError> {
    answer.rolling_release.ok_or_else(|| VercelError::Shape {
        path: path.to_owned(),
        reason: "the answer has no rolling release".to_owned(),
    })
}

impl VercelClient {
    /// Whether the project can run rolling releases, and its stages now.
    pub async fn rolling_availability(
        &self,
        project_id: &str,
    ) -> Result<Availability, VercelError> {
        match self
            .call::<ConfigAnswer>(Method::GET, &config_path(project_id), &[], None)
            .await
        {
            Ok(answer) => Ok(Availability::Available {
                stages: answer
                    .rolling_release
                    .and_then(|c| c.stages)
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.target_percentage)
                    .collect(),
            }),
            Err(err) => unavailable(&err).ok_or(err),
        }
    }

    /// Configure the project's stages, each approved by steward (`manual-approval`).
    pub async fn configure_rolling_release(
        &self,
        project_id: &str,
        percents: &[u8],
    ) -> Result<Availability, VercelError> {
        let body = json!({
            "enabled": true,
            "advancementType": "manual-approval",
            "target": "production",
            "stages": percents.iter().map(|p| json!({"targetPercentage": p})).collect::<Vec<_>>(),
        });
        match self
            .call::<Value>(Method::PATCH, &config_path(project_id), &[], Some(&body))
            .await
        {
            Ok(_) => Ok(Availability::Available {
                stages: percents.to_vec(),
            }),
            Err(err) => unavailable(&err).ok_or(err),
        }
    }

    /// The project's active rolling release, if one runs.
    pub async fn active_rolling_release(
        &self,
        project_id: &str,
    ) -> Result<Option<RollingRelease>, VercelError> {
        let answer: Answer = self
            .call(Method::GET, &release_path(project_id, ""), &[], None)
            .await?;
        Ok(answer.rolling_release)
    }

    pub async fn start_rolling_release(
        &self,
        project_id: &str,
        canary: &str,
    ) -> Result<RollingRelease, VercelError> {
        let path = release_path(project_id, "/start");
        let body = json!({"canaryDeploymentId": canary});
        document(
            self.call(Method::POST, &path, &[], Some(&body)).await?,
            &path,
        )
    }

    pub async fn approve_rolling_stage(
        &self,
        project_id: &str,
        canary: &str,
        next_stage: usize,
    ) -> Result<RollingRelease, VercelError> {
        let path = release_path(project_id, "/approve-stage");
        let body = json!({"canaryDeploymentId": canary, "nextStageIndex": next_stage});
        document(
            self.call(Method::POST, &path, &[], Some(&body)).await?,
            &path,
        )
    }

    pub async fn complete_rolling_release(
        &self,
        project_id: &str,
        canary: &str,
    ) -> Result<RollingRelease, VercelError> {
        let path = release_path(project_id, "/complete");
        let body = json!({"canaryDeploymentId": canary});
        document(
            self.call(Method::POST, &path, &[], Some(&body)).await?,
            &path,
        )
    }

    /// Abort: an instant rollback to the release's current deployment sends all traffic
    /// back to it at once.
    pub async fn abort_rolling_release(
        &self,
        project_id: &str,
        current: &str,
    ) -> Result<(), VercelError> {
        self.rollback(project_id, current).await
    }

    /// Requests `deployment` served in `[since_ms, until_ms)`, from its runtime logs.
    pub async fn request_counts(
        &self,
        project_id: &str,
        deployment: &str,
        since_ms: u64,
        until_ms: u64,
    ) -> Result<RequestCounts, VercelError> {
        let path = format!("/v1/projects/{project_id}/deployments/{deployment}/runtime-logs");
        let stream = self.call_raw(Method::GET, &path, &[], None).await?;
        Ok(count_requests(&stream, since_ms, until_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_keep_only_requests_inside_the_window_and_count_5xx_as_errors() {
        let stream = [
            r#"{"responseStatusCode":200,"timestampInMs":10,"source":"serverless"}"#,
            r#"{"responseStatusCode":503,"timestampInMs":11,"source":"edge-function"}"#,
            r#"{"responseStatusCode":404,"timestampInMs":12,"source":"serverless"}"#,
            r#"{"responseStatusCode":500,"timestampInMs":99,"source":"serverless"}"#,
            r#"{"responseStatusCode":-1,"timestampInMs":12,"source":"delimiter"}"#,
            r#"{"responseStatusCode":200,"timestampInMs":12,"source":"a-source-from-next-year","x":1}"#,
            "not json at all",
            "",
        ]
        .join("\n");
        let counts = count_requests(stream.as_bytes(), 10, 50);
        assert_eq!(
            counts,
            RequestCounts {
                requests: 4,
                errors: 1
            }
        );
        assert_eq!(counts.error_rate(), Some(0.25));
    }

    #[test]
    fn a_release_in_a_state_vercel_adds_later_still_parses() {
        let release: RollingRelease = serde_json::from_value(json!({
            "state": "PAUSED_FOR_REVIEW",
            "canaryDeployment": {"id": "dpl_2", "newField": 1},
            "activeStage": {"index": 0, "targetPercentage": 10, "isFinalStage": false, "linearShift": true},
            "stages": [],
            "substate": "SOMETHING",
        }))
        .expect("parses");
        assert_eq!(release.state, ReleaseState::Other);
        assert_eq!(release.canary_id(), Some("dpl_2"));
        assert_eq!(release.percent(), 10);
    }

    #[test]
    fn a_payment_required_answer_is_the_feature_being_unavailable_not_a_failure() {
        let err = VercelError::Api {
            status: 402,
            code: "plan_not_supported".into(),
            message: "not on your plan".into(),
            retry_after: None,
        };
        assert_eq!(
            unavailable(&err),
            Some(Availability::Unavailable {
                code: "plan_not_supported".into(),
                message: "not on your plan".into()
            })
        );
        let other = VercelError::Api {
            status: 404,
            code: "not_found".into(),
            message: "no".into(),
            retry_after: None,
        };
        assert_eq!(unavailable(&other), None);
    }
}
