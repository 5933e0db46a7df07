//! The GitHub calls, on octocrab: who we are, the sticky comment, commit statuses and
//! tags. Each call goes through [`GithubClient::call`], which applies the one retry policy
//! in `error.rs`.

use std::fmt;
use std::future::Future;

use octocrab::Octocrab;
use octocrab::models::issues::Comment;
use octocrab::models::{AppId, InstallationId};
use octocrab::service::middleware::retry::RetryConfig;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

use super::error::{GithubError, next_attempt};
use super::sticky::{self, Candidate, StickyOutcome};
use super::{GithubAuth, Repo};

/// The status context `steward comment` sets.
pub const PLAN_STATUS_CONTEXT: &str = "steward/plan";

/// Pages of 100 comments; a PR with more than 100 pages is not one steward will meet,
/// and the bound keeps a misbehaving server from looping us forever.
const MAX_PAGES: u32 = 100;

/// The account our comments are written by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A person's (or machine user's) token: `GET /user` says the login.
    User(String),
    /// A GitHub App: comments are by `<slug>[bot]`, of type `Bot`.
    App(String),
    /// An integration token that may not call `GET /user` (the `GITHUB_TOKEN` of GitHub
    /// Actions is one): any bot's comment with the marker is taken as ours, since only
    /// steward writes the marker.
    SomeBot,
}

impl Identity {
    pub fn wrote(&self, login: &str, kind: &str) -> bool {
        match self {
            Identity::User(me) => login.eq_ignore_ascii_case(me),
            Identity::App(me) => login.eq_ignore_ascii_case(me) && kind == "Bot",
            Identity::SomeBot => kind == "Bot",
        }
    }
}

/// A commit status state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CommitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
        }
    }
}

enum WhoAmI {
    Token,
    /// The App-level client (JWT auth) that can read `GET /app`.
    App(Box<Octocrab>),
}

/// steward's GitHub client. `Debug` shows the API URL and the kind of auth, never a
/// credential.
pub struct GithubClient {
    crab: Octocrab,
    who: WhoAmI,
    me: OnceCell<Identity>,
    api_url: String,
}

impl fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.who {
            WhoAmI::Token => "token",
            WhoAmI::App(_) => "app",
        };
        f.debug_struct("GithubClient")
            .field("api_url", &self.api_url)
            .field("auth", &auth)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Login {
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct AppInfo {
    slug: String,
}

#[derive(Deserialize)]
struct GitRef {
    object: GitObject,
}

#[derive(Deserialize)]
struct GitObject {
    sha: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct GitTag {
    object: GitObject,
}

impl GithubClient {
    /// A client for the API at `api_url` (a GitHub Enterprise `/api/v3` path is kept).
    /// Must be called inside a Tokio runtime.
    pub fn new(api_url: &str, auth: &GithubAuth) -> Result<GithubClient, GithubError> {
        let api_url = api_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&api_url).map_err(|e| {
            GithubError::Config(format!("`{api_url}` is not a GitHub API URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(GithubError::Config(format!(
                "`{api_url}` is not a GitHub API URL: use https://api.github.com or https://HOST/api/v3"
            )));
        }
        let build_error = |e: octocrab::Error| {
            GithubError::Config(format!("cannot set up the GitHub client: {e}"))
        };
        let builder = Octocrab::builder()
            .base_uri(api_url.as_str())
            .map_err(build_error)?
            // octocrab does not send it; GitHub recommends pinning the version we speak.
            .add_header(
                reqwest::header::HeaderName::from_static("x-github-api-version"),
                "2022-11-28".to_owned(),
            )
            // octocrab's own retries are off: `Simple(3)` repeats a 429 at once (which
            // GitHub's secondary limits punish) and `HandleRateLimits` may sleep until
            // the hourly reset. `call` applies one policy instead: honour `retry-after`
            // and `x-ratelimit-reset` up to a minute, retry 5xx only where repeating is
            // harmless, and otherwise say clearly when to run again.
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(std::time::Duration::from_secs(10)))
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .set_write_timeout(Some(std::time::Duration::from_secs(30)));
        let (crab, who) = match auth {
            GithubAuth::Token(token) => (
                builder
                    .personal_token(token.expose().to_owned())
                    .build()
                    .map_err(build_error)?,
                WhoAmI::Token,
            ),
            GithubAuth::App {
                app_id,
                private_key_pem,
                installation_id,
            } => {
                // The key error names neither the key nor any part of it.
                let key =
                    jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes())
                        .map_err(|e| {
                            GithubError::Config(format!(
                                "the GitHub App private key is not an RSA key in PEM form ({e})"
                            ))
                        })?;
                let app = builder
                    .app(AppId(*app_id), key)
                    .build()
                    .map_err(build_error)?;
                let installation = app
                    .installation(InstallationId(*installation_id))
                    .map_err(build_error)?;
                (installation, WhoAmI::App(Box::new(app)))
            }
        };
        Ok(GithubClient {
            crab,
            who,
            me: OnceCell::new(),
            api_url,
        })
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Run one API call under the retry policy. `idempotent` says whether repeating it
    /// after an answer we did not see (5xx, dropped connection) is harmless.
    async fn call<T, F, Fut>(&self, action: &str, idempotent: bool, op: F) -> Result<T, GithubError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, octocrab::Error>>,
    {
        let mut attempt = 1;
        loop {
            let err = match op().await {
                Ok(value) => return Ok(value),
                Err(err) => GithubError::from_octocrab(action, err),
            };
            match next_attempt(&err, attempt, idempotent) {
                Some(wait) => {
                    tracing::warn!(error = %err, wait_ms = wait.as_millis() as u64, attempt, "GitHub call failed; trying again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err(err),
            }
        }
    }

    /// Who our comments are written by (looked up once).
    pub async fn identity(&self) -> Result<&Identity, GithubError> {
        self.me
            .get_or_try_init(|| async {
                match &self.who {
                    WhoAmI::Token => {
                        let action = "looking up the token's account (GET /user)";
                        let found = self
                            .call(action, true, || {
                                self.crab.get::<Login, _, ()>("/user", None)
                            })
                            .await;
                        match found {
                            Ok(user) if user.kind == "Bot" => Ok(Identity::App(user.login)),
                            Ok(user) => Ok(Identity::User(user.login)),
                            // An installation token (GitHub Actions' GITHUB_TOKEN) may not
                            // read /user: it is some App's bot.
                            // A rate limit is not such a refusal, and stays an error.
                            Err(GithubError::Api { status: 403, .. }) => Ok(Identity::SomeBot),
                            Err(err) => Err(err),
                        }
                    }
                    WhoAmI::App(app) => {
                        let action = "looking up the GitHub App (GET /app)";
                        let info = self
                            .call(action, true, || app.get::<AppInfo, _, ()>("/app", None))
                            .await?;
                        Ok(Identity::App(format!("{}[bot]", info.slug)))
                    }
                }
            })
            .await
    }

    /// Every comment on an issue or PR, oldest first. Pages are requested by number with
    /// relative routes rather than by following `Link` URLs: octocrab attaches App and
    /// installation credentials only to relative routes or `api.github.com`, so following
    /// absolute links would drop them on GitHub Enterprise.
    pub async fn list_comments(&self, repo: &Repo, pr: u64) -> Result<Vec<Comment>, GithubError> {
        let route = format!("/repos/{}/{}/issues/{pr}/comments", repo.owner, repo.name);
        let action = format!("listing the comments on {repo}#{pr}");
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let query = [("per_page", 100u32), ("page", page)];
            let got = self
                .call(&action, true, || {
                    self.crab
                        .get::<octocrab::Page<Comment>, _, _>(&route, Some(&query))
                })
                .await?;
            let more = got.next.is_some();
            all.extend(got.items);
            if !more {
                break;
            }
        }
        Ok(all)
    }

    /// Post `body` as our one comment on the PR, found again by `marker`: create it,
    /// update it in place (a real `PATCH`), or leave it when it already says this.
    /// The marker is put first when the body lacks it, and the body is cut to GitHub's
    /// limit (see [`sticky::fit_body`]; cut it first to say where the full text is).
    pub async fn upsert_sticky_comment(
        &self,
        repo: &Repo,
        pr: u64,
        marker: &str,
        body: &str,
    ) -> Result<StickyOutcome, GithubError> {
        let body = if body.contains(marker) {
            body.to_owned()
        } else {
            format!("{marker}\n{body}")
        };
        let body = sticky::fit_body(&body, None);
        let me = self.identity().await?.clone();
        let comments = self.list_comments(repo, pr).await?;
        let candidates: Vec<Candidate> = comments
            .iter()
            .map(|c| Candidate {
                id: c.id.into_inner(),
                login: c.user.login.clone(),
                kind: c.user.r#type.clone(),
                body: c.body.clone().unwrap_or_default(),
            })
            .collect();
        let payload = json!({ "body": body });
        match sticky::find(&candidates, marker, &me) {
            Some(found) if sticky::same_body(&found.body, &body) => {
                Ok(StickyOutcome::Unchanged(found.id))
            }
            Some(found) => {
                // A real PATCH, as GitHub documents; octocrab's `update_comment` sends POST.
                let route = format!(
                    "/repos/{}/{}/issues/comments/{}",
                    repo.owner, repo.name, found.id
                );
                let action = format!("updating comment {} on {repo}#{pr}", found.id);
                let updated = self
                    .call(&action, true, || {
                        self.crab.patch::<Comment, _, _>(&route, Some(&payload))
                    })
                    .await?;
                Ok(StickyOutcome::Updated(updated.id.into_inner()))
            }
            None => {
                let route = format!("/repos/{}/{}/issues/{pr}/comments", repo.owner, repo.name);
                let action = format!("commenting on {repo}#{pr}");
                let created = self
                    .call(&action, false, || {
                        self.crab.post::<_, Comment>(&route, Some(&payload))
                    })
                    .await?;
                Ok(StickyOutcome::Created(created.id.into_inner()))
            }
        }
    }

    /// Set the `steward/plan` status on a commit.
    pub async fn set_status(
        &self,
        repo: &Repo,
        sha: &str,
        state: CommitState,
        description: &str,
    ) -> Result<(), GithubError> {
        self.set_status_in_context(repo, sha, PLAN_STATUS_CONTEXT, state, description)
            .await
    }

    /// Set a commit status; the description is cut to GitHub's 140 characters.
    pub async fn set_status_in_context(
        &self,
        repo: &Repo,
        sha: &str,
        context: &str,
        state: CommitState,
        description: &str,
    ) -> Result<(), GithubError> {
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GithubError::Config(format!(
                "`{sha}` is not a full 40-hex commit SHA"
            )));
        }
        let description = sticky::fit_description(description);
        let action = format!("setting the {context} status on {repo}@{}", &sha[..12]);
        let route = format!("/repos/{}/{}/statuses/{sha}", repo.owner, repo.name);
        let payload = json!({
            "state": state.as_str(),
            "description": description,
            "context": context,
        });
        // Setting a status twice leaves the same latest state, so a retry is harmless.
        self.call(&action, true, || {
            self.crab
                .post::<_, octocrab::models::Status>(&route, Some(&payload))
        })
        .await?;
        Ok(())
    }

    /// The commit a tag names, peeling annotated tags (a ref to a tag object, which
    /// points at the commit). A missing tag is [`GithubError::TagNotFound`].
    pub async fn resolve_tag(&self, repo: &Repo, tag: &str) -> Result<String, GithubError> {
        let action = format!("resolving tag `{tag}` in {repo}");
        let route = format!(
            "/repos/{}/{}/git/ref/tags/{}",
            repo.owner,
            repo.name,
            encode_ref(tag)
        );
        let found = self
            .call(&action, true, || {
                self.crab.get::<GitRef, _, ()>(&route, None)
            })
            .await;
        let mut object = match found {
            Ok(found) => found.object,
            Err(err) if err.status() == Some(404) => {
                return Err(GithubError::TagNotFound {
                    repo: repo.to_string(),
                    tag: tag.to_owned(),
                });
            }
            Err(err) => return Err(err),
        };
        // A tag object may itself point at another tag; a few levels is plenty.
        for _ in 0..5 {
            match object.kind.as_str() {
                "commit" if is_sha(&object.sha) => return Ok(object.sha.to_lowercase()),
                "tag" => {
                    let route = format!(
                        "/repos/{}/{}/git/tags/{}",
                        repo.owner, repo.name, object.sha
                    );
                    object = self
                        .call(&action, true, || {
                            self.crab.get::<GitTag, _, ()>(&route, None)
                        })
                        .await?
                        .object;
                }
                other => {
                    return Err(GithubError::Unexpected {
                        action,
                        message: format!(
                            "the tag points at a {other} `{}`, not a commit",
                            object.sha
                        ),
                    });
                }
            }
        }
        Err(GithubError::Unexpected {
            action,
            message: "the tag is nested more than five levels deep".to_owned(),
        })
    }
}

fn is_sha(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Percent-encode a ref name for a path, keeping its `/` separators.
fn encode_ref(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
