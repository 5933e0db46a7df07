//! The GitHub REST emulator: the issue-comment, commit-status, git-ref and App-token
//! endpoints steward uses, with GitHub's JSON shapes, `Link` pagination, JSON errors and
//! rate-limit answers (see `reference/vercel-github-api.md`, part B). It also answers
//! under the GitHub Enterprise prefix `/api/v3`. Faults, seeding and the request log are
//! `/_emulator/` admin endpoints.

mod routes;
mod state;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use state::{Comment, CommitStatus, Faults, LoggedRequest, State, Tag, User};

/// How to start a GitHub emulator.
#[derive(Clone)]
pub struct GithubEmulatorConfig {
    pub listen: SocketAddr,
    /// The personal access token the emulator accepts.
    pub token: String,
    /// Whose token that is (what `GET /user` answers).
    pub login: String,
    /// Accept App JWTs whose `iss` is this id (enables the installation-token exchange).
    pub app_id: Option<u64>,
    /// The App's slug: installation tokens act as `<slug>[bot]`.
    pub app_slug: String,
    /// When set, App JWTs must carry a valid RS256 signature under this public key.
    pub app_public_key_pem: Option<String>,
    /// When set, only this installation id can mint tokens (others are 404).
    pub installation_id: Option<u64>,
}

impl GithubEmulatorConfig {
    pub fn new(token: impl Into<String>) -> Self {
        GithubEmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: token.into(),
            login: "steward-ci".to_owned(),
            app_id: None,
            app_slug: "steward".to_owned(),
            app_public_key_pem: None,
            installation_id: None,
        }
    }
}

// The token is a credential even in an emulator: keep it out of logs.
impl fmt::Debug for GithubEmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubEmulatorConfig")
            .field("listen", &self.listen)
            .field("token", &"<redacted>")
            .field("login", &self.login)
            .field("app_id", &self.app_id)
            .field("app_slug", &self.app_slug)
            .field("installation_id", &self.installation_id)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GithubEmulatorError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub config: GithubEmulatorConfig,
    /// `http://host:port` as bound, the root of every URL the emulator writes.
    pub base_url: String,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shared { .. }")
    }
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic in one handler must not wedge the emulator for every later request.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningEmulator {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`; also serves the same API under `/api/v3`.
    pub base_url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl RunningEmulator {
    pub async fn start(
        config: GithubEmulatorConfig,
    ) -> Result<RunningEmulator, GithubEmulatorError> {
        let bind = |source| GithubEmulatorError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            config,
            base_url: base_url.clone(),
        });
        let app = routes::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(RunningEmulator {
            addr,
            base_url,
            shared,
            stop: Some(stop),
        })
    }

    /// Add a comment as `login` (a `[bot]` suffix makes it a Bot), returning its id.
    pub fn seed_comment(&self, repo: &str, pr: u64, body: &str, login: &str) -> u64 {
        let mut state = self.shared.lock();
        let user = state.user(login);
        state
            .add_comment(&repo.to_lowercase(), pr, body, user, None)
            .id
    }

    /// Create a tag; an annotated one gets a tag object between the ref and the commit.
    pub fn seed_tag(&self, repo: &str, tag: &str, sha: &str, annotated: bool) {
        self.shared
            .lock()
            .add_tag(&repo.to_lowercase(), tag, sha, annotated);
    }

    /// The comments on one issue or PR, ascending by id.
    pub fn comments(&self, repo: &str, pr: u64) -> Vec<Comment> {
        self.shared
            .lock()
            .comments
            .values()
            .filter(|c| c.repo == repo.to_lowercase() && c.issue == pr)
            .cloned()
            .collect()
    }

    /// Every status set on a commit, oldest first.
    pub fn statuses(&self, repo: &str, sha: &str) -> Vec<CommitStatus> {
        self.shared
            .lock()
            .statuses
            .iter()
            .filter(|s| s.repo == repo.to_lowercase() && s.sha == sha)
            .cloned()
            .collect()
    }

    /// API requests answered so far, in order (admin calls are not logged).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Replace the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
