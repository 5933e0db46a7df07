//! The GitHub emulator's state: comments, commit statuses, tags, the tokens it has
//! issued, injected faults and the request log. Everything is in memory: the emulator
//! serves tests and demos, which start from a seeded state every time.
//!
//! Stored records hold no URLs; every URL is built when a response is written, from the
//! base the request came in on (`/` or the GitHub Enterprise `/api/v3` prefix).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Who a token or a comment belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub login: String,
    pub id: u64,
    /// `"User"` or `"Bot"`, as GitHub spells `type`.
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    pub id: u64,
    pub repo: String,
    pub issue: u64,
    pub body: String,
    pub user: User,
    /// The App that made it, for comments written with an installation token.
    pub via_app: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommitStatus {
    pub id: u64,
    pub repo: String,
    pub sha: String,
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    pub context: String,
    pub creator: User,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tag {
    pub repo: String,
    pub name: String,
    /// The commit the tag finally points at.
    pub commit: String,
    /// For an annotated tag, the sha of its tag object (what the ref points at).
    pub object: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One API request as the emulator saw it, so tests can assert which verbs were used
/// and that nothing secret was sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    /// The raw path, including any `/api/v3` prefix.
    pub path: String,
    pub query: Option<String>,
    /// The JSON body (a string when it was not JSON; null when empty).
    pub body: Value,
    pub status: u16,
}

/// Faults injected through `POST /_emulator/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Added to every API call.
    pub latency_ms: u64,
    /// The next N API calls are refused as rate limited.
    pub rate_limit: u32,
    /// 403 or 429 (GitHub uses both); anything else means 429.
    pub rate_limit_status: u16,
    /// Send `retry-after` (a secondary limit) with this many seconds.
    pub retry_after_secs: Option<u64>,
    /// `x-ratelimit-reset` is this many seconds from now.
    pub reset_in_secs: u64,
    /// The next N API calls answer 500.
    pub errors: u32,
}

#[derive(Debug, Default)]
pub struct State {
    seq: u64,
    users: BTreeMap<String, u64>,
    pub comments: BTreeMap<u64, Comment>,
    pub statuses: Vec<CommitStatus>,
    /// (repo, tag name) → tag.
    pub tags: BTreeMap<(String, String), Tag>,
    /// Installation tokens handed out: token → installation id.
    pub installation_tokens: BTreeMap<String, u64>,
    pub faults: Faults,
    pub requests: Vec<LoggedRequest>,
}

pub fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A 40-hex id derived from its inputs, the shape of a Git object id.
pub fn object_id(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())[..40].to_owned()
}

/// The URLs of one response: the API root the request used and the web root.
#[derive(Debug, Clone)]
pub struct Urls {
    pub api: String,
    pub web: String,
}

impl State {
    pub fn next_id(&mut self) -> u64 {
        self.seq += 1;
        // Real ids are large and increasing; tests only rely on the ordering.
        1_000_000_000 + self.seq
    }

    /// The same login always has the same id.
    pub fn user(&mut self, login: &str) -> User {
        let next = 1000 + self.users.len() as u64 + 1;
        let id = *self.users.entry(login.to_owned()).or_insert(next);
        let kind = if login.ends_with("[bot]") {
            "Bot"
        } else {
            "User"
        };
        User {
            login: login.to_owned(),
            id,
            kind: kind.to_owned(),
        }
    }

    pub fn add_comment(
        &mut self,
        repo: &str,
        issue: u64,
        body: &str,
        user: User,
        via_app: Option<u64>,
    ) -> Comment {
        let now = Utc::now();
        let comment = Comment {
            id: self.next_id(),
            repo: repo.to_owned(),
            issue,
            body: body.to_owned(),
            user,
            via_app,
            created_at: now,
            updated_at: now,
        };
        self.comments.insert(comment.id, comment.clone());
        comment
    }

    pub fn add_tag(&mut self, repo: &str, name: &str, commit: &str, annotated: bool) -> Tag {
        let tag = Tag {
            repo: repo.to_owned(),
            name: name.to_owned(),
            commit: commit.to_owned(),
            object: annotated.then(|| object_id(&["tag", repo, name, commit])),
            created_at: Utc::now(),
        };
        self.tags
            .insert((repo.to_owned(), name.to_owned()), tag.clone());
        tag
    }
}

fn escape_login(login: &str) -> String {
    login.replace('[', "%5B").replace(']', "%5D")
}

/// A complete `simple-user`: octocrab's `Author` requires every one of these fields, and
/// every `*_url` must parse as a URL.
pub fn author_json(urls: &Urls, user: &User) -> Value {
    let api = &urls.api;
    let login = escape_login(&user.login);
    let html = match user.login.strip_suffix("[bot]") {
        Some(slug) => format!("{}/apps/{slug}", urls.web),
        None => format!("{}/{login}", urls.web),
    };
    json!({
        "login": user.login,
        "id": user.id,
        "node_id": format!("MDQ6VXNlcj{}", user.id),
        "avatar_url": format!("{}/avatars/u/{}?v=4", urls.web, user.id),
        "gravatar_id": "",
        "url": format!("{api}/users/{login}"),
        "html_url": html,
        "followers_url": format!("{api}/users/{login}/followers"),
        "following_url": format!("{api}/users/{login}/following{{/other_user}}"),
        "gists_url": format!("{api}/users/{login}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/users/{login}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/users/{login}/subscriptions"),
        "organizations_url": format!("{api}/users/{login}/orgs"),
        "repos_url": format!("{api}/users/{login}/repos"),
        "events_url": format!("{api}/users/{login}/events{{/privacy}}"),
        "received_events_url": format!("{api}/users/{login}/received_events"),
        "type": user.kind,
        "user_view_type": "public",
        "site_admin": false,
    })
}

/// The App object GitHub nests as `performed_via_github_app` and serves at `GET /app`.
pub fn app_json(urls: &Urls, app_id: u64, slug: &str, owner: &User) -> Value {
    let created = "2024-01-01T00:00:00Z";
    json!({
        "id": app_id,
        "slug": slug,
        "node_id": format!("A_kwDO{app_id}"),
        "client_id": format!("Iv1.{:016x}", app_id),
        "owner": author_json(urls, owner),
        "name": slug,
        "description": "steward's GitHub App (emulated)",
        "external_url": format!("{}/apps/{slug}", urls.web),
        "html_url": format!("{}/apps/{slug}", urls.web),
        "created_at": created,
        "updated_at": created,
        "permissions": {"issues": "write", "pull_requests": "write", "statuses": "write", "contents": "read", "metadata": "read"},
        "events": ["pull_request", "issue_comment"],
    })
}

pub fn comment_json(urls: &Urls, comment: &Comment, app: Option<Value>) -> Value {
    let api = &urls.api;
    let repo = &comment.repo;
    let association = if comment.user.kind == "Bot" {
        "NONE"
    } else {
        "CONTRIBUTOR"
    };
    json!({
        "id": comment.id,
        "node_id": format!("IC_kwDO{:x}", comment.id),
        "url": format!("{api}/repos/{repo}/issues/comments/{}", comment.id),
        "html_url": format!("{}/{repo}/pull/{}#issuecomment-{}", urls.web, comment.issue, comment.id),
        "issue_url": format!("{api}/repos/{repo}/issues/{}", comment.issue),
        "body": comment.body,
        "user": author_json(urls, &comment.user),
        "created_at": rfc3339(&comment.created_at),
        "updated_at": rfc3339(&comment.updated_at),
        "author_association": association,
        "performed_via_github_app": app,
        "reactions": {
            "url": format!("{api}/repos/{repo}/issues/comments/{}/reactions", comment.id),
            "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
            "confused": 0, "heart": 0, "rocket": 0, "eyes": 0,
        },
    })
}

pub fn status_json(urls: &Urls, status: &CommitStatus) -> Value {
    json!({
        "url": format!("{}/repos/{}/statuses/{}", urls.api, status.repo, status.sha),
        "avatar_url": format!("{}/avatars/u/{}?v=4", urls.web, status.creator.id),
        "id": status.id,
        "node_id": format!("SC_kwDO{:x}", status.id),
        "state": status.state,
        "description": status.description,
        "target_url": status.target_url,
        "context": status.context,
        "created_at": rfc3339(&status.created_at),
        "updated_at": rfc3339(&status.created_at),
        "creator": author_json(urls, &status.creator),
    })
}

pub fn ref_json(urls: &Urls, tag: &Tag) -> Value {
    let api = &urls.api;
    let repo = &tag.repo;
    let object = match &tag.object {
        Some(sha) => {
            json!({"sha": sha, "type": "tag", "url": format!("{api}/repos/{repo}/git/tags/{sha}")})
        }
        None => json!({"sha": tag.commit, "type": "commit",
            "url": format!("{api}/repos/{repo}/git/commits/{}", tag.commit)}),
    };
    json!({
        "ref": format!("refs/tags/{}", tag.name),
        "node_id": format!("REF_kwDO{}", &object_id(&["ref", repo, &tag.name])[..12]),
        "url": format!("{api}/repos/{repo}/git/refs/tags/{}", tag.name),
        "object": object,
    })
}

pub fn tag_object_json(urls: &Urls, tag: &Tag, sha: &str) -> Value {
    let api = &urls.api;
    let repo = &tag.repo;
    json!({
        "node_id": format!("TAG_kwDO{}", &sha[..12]),
        "tag": tag.name,
        "sha": sha,
        "url": format!("{api}/repos/{repo}/git/tags/{sha}"),
        "message": format!("Release {}\n", tag.name),
        "tagger": {"name": "Release Bot", "email": "release@example.com", "date": rfc3339(&tag.created_at)},
        "object": {"sha": tag.commit, "type": "commit",
            "url": format!("{api}/repos/{repo}/git/commits/{}", tag.commit)},
        "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
    })
}
