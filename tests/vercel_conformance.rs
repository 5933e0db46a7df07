//! The emulator answers every operation steward uses with bodies that validate against
//! Vercel's official OpenAPI (`tests/fixtures/vercel-openapi-subset.json`, a copy of the
//! reference), so the emulator cannot drift from the real API unnoticed.

mod common;

use serde_json::{Value, json};
use steward::emulator::vercel::{EmulatorConfig, RunningEmulator};

const TOKEN: &str = "conformance-token";
const SHA: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

fn spec() -> Value {
    let path = common::repo_root().join("tests/fixtures/vercel-openapi-subset.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read spec")).expect("json")
}

/// OpenAPI 3.0's `nullable: true` is not JSON Schema: rewrite it as a `null` type. And
/// Vercel's spec is generated from TypeScript unions, whose `oneOf` branches overlap (two
/// env variants differ only by an optional field), so no real response can match exactly
/// one; the official SDK parses them as a union, which is `anyOf`.
fn nullable_to_json_schema(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if let Some(branches) = map.remove("oneOf") {
                map.insert("anyOf".to_owned(), branches);
            }
            // Generated empty lists (`required: []`, `enum: []`) are not valid JSON Schema.
            map.retain(|key, value| {
                !(matches!(key.as_str(), "required" | "enum" | "anyOf" | "allOf")
                    && value.as_array().is_some_and(Vec::is_empty))
            });
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".to_owned(), json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".to_owned(), json!([inner, {"type": "null"}]));
                    }
                }
            }
            map.values_mut().for_each(nullable_to_json_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_json_schema),
        _ => {}
    }
}

/// The response schema of an operation and status, with `#/components` resolvable.
fn response_schema(spec: &Value, op_id: &str, status: &str) -> Value {
    for ops in spec["paths"].as_object().expect("paths").values() {
        for op in ops.as_object().expect("ops").values() {
            if op["operationId"] == op_id {
                let mut schema =
                    op["responses"][status]["content"]["application/json"]["schema"].clone();
                assert!(!schema.is_null(), "{op_id} has no {status} JSON schema");
                if let Value::Object(map) = &mut schema {
                    map.insert("components".to_owned(), spec["components"].clone());
                }
                nullable_to_json_schema(&mut schema);
                return schema;
            }
        }
    }
    panic!("no operation {op_id}")
}

fn assert_conforms(spec: &Value, op_id: &str, status: &str, body: &Value) {
    let schema = response_schema(spec, op_id, status);
    let validator =
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{op_id} schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .take(40)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{op_id} {status} response does not match the official schema:\n{}",
        errors.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_steward_uses_answers_in_the_official_shape() {
    let spec = spec();
    let mut config = EmulatorConfig::new(TOKEN);
    config.build_time = std::time::Duration::from_millis(100);
    let emulator = RunningEmulator::start(config).await.expect("emulator");
    let project_id = emulator.create_project("conf-web", None);
    let base = emulator.base_url.clone();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("send");
            let status = response.status().as_u16().to_string();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    let (status, created) = call(reqwest::Method::POST, "/v10/projects/conf-web/env".into(), Some(json!({"key": "A", "value": "1", "type": "encrypted", "target": ["production"], "comment": "steward:fp=x"}))).await;
    assert_eq!(status, "201");
    assert_conforms(&spec, "createProjectEnv", "201", &created);
    let (_, envs) = call(
        reqwest::Method::GET,
        "/v10/projects/conf-web/env?decrypt=true".into(),
        None,
    )
    .await;
    assert_conforms(&spec, "filterProjectEnvs", "200", &envs);
    let env_id = envs["envs"][0]["id"].as_str().expect("id").to_owned();
    let (_, one) = call(
        reqwest::Method::GET,
        format!("/v1/projects/conf-web/env/{env_id}"),
        None,
    )
    .await;
    assert_conforms(&spec, "getProjectEnv", "200", &one);
    let (_, edited) = call(
        reqwest::Method::PATCH,
        format!("/v9/projects/conf-web/env/{env_id}"),
        Some(json!({"value": "2"})),
    )
    .await;
    assert_conforms(&spec, "editProjectEnv", "200", &edited);

    let repo_id = emulator.with_state(|s| s.projects[&project_id].repo_id);
    let (status, deployment) = call(
        reqwest::Method::POST,
        "/v13/deployments".into(),
        Some(json!({"name": "conf-web", "project": project_id, "target": "production", "gitSource": {"type": "github", "repoId": repo_id, "ref": "main", "sha": SHA}})),
    )
    .await;
    assert_eq!(status, "200", "{deployment}");
    assert_conforms(&spec, "createDeployment", "200", &deployment);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let id = deployment["id"].as_str().expect("id").to_owned();
    let (_, got) = call(reqwest::Method::GET, format!("/v13/deployments/{id}"), None).await;
    assert_eq!(got["readyState"], "READY");
    assert_conforms(&spec, "getDeployment", "200", &got);
    let (_, list) = call(
        reqwest::Method::GET,
        format!("/v6/deployments?projectId={project_id}&target=production&limit=10"),
        None,
    )
    .await;
    assert_conforms(&spec, "getDeployments", "200", &list);
    let (_, project) = call(
        reqwest::Method::GET,
        "/v9/projects/conf-web?rollbackInfo=true".into(),
        None,
    )
    .await;
    assert_eq!(
        project["targets"]["production"]["id"],
        id.as_str(),
        "auto-assigned production"
    );
    assert_conforms(&spec, "getProject", "200", &project);
    let (_, deleted) = call(
        reqwest::Method::DELETE,
        format!("/v9/projects/conf-web/env/{env_id}"),
        None,
    )
    .await;
    assert_conforms(&spec, "removeProjectEnv", "200", &deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_use_the_official_body_and_auth_and_team_scope_are_enforced() {
    let emulator = RunningEmulator::start(EmulatorConfig::new(TOKEN))
        .await
        .expect("emulator");
    emulator.create_project("team-web", Some("team_a"));
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut r = http.get(format!("{}{path}", emulator.base_url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let resp = r.send().await.expect("send");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.expect("json"),
            )
        }
    };
    let (status, body) = get("/v9/projects/team-web?teamId=team_a", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = get("/v9/projects/team-web?teamId=team_a", Some("wrong")).await;
    assert_eq!(status, 403);
    let (status, body) = get("/v9/projects/team-web", Some(TOKEN)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "not visible without its team"
    );
    let (status, _) = get("/v9/projects/team-web?teamId=team_a", Some(TOKEN)).await;
    assert_eq!(status, 200);
}
