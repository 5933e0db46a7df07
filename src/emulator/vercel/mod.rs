//! The Vercel API emulator: the paths, versions, JSON shapes and errors steward uses
//! (see `reference/vercel-github-api.md`, part A), plus deployment URLs that answer HTTP
//! by Host header so health checks are real requests. Faults are injected through
//! `/_emulator/` admin endpoints.

pub mod limits;
pub mod promotion;
mod rolling;
mod routes;
mod state;
mod traffic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use state::{Faults, State};
pub use traffic::Traffic;

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    pub token: String,
    pub build_time: Duration,
    pub projects: Vec<String>,
    pub state_file: Option<PathBuf>,
}

impl EmulatorConfig {
    pub fn new(token: impl Into<String>) -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: token.into(),
            build_time: Duration::from_millis(300),
            projects: Vec::new(),
            state_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the state file {}: {message}", path.display())]
    State { path: PathBuf, message: String },
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub token: String,
    pub state_file: Option<PathBuf>,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic in one handler must not wedge the emulator for every later request.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn persist(&self) {
        if let Some(path) = &self.state_file {
            let json = serde_json::to_vec(&*self.lock()).unwrap_or_default();
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, json).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningEmulator {
    pub addr: SocketAddr,
    pub base_url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared { .. }")
    }
}

impl RunningEmulator {
    pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
        let mut state = match &config.state_file {
            Some(path) if path.exists() => {
                let bytes = std::fs::read(path).map_err(|e| EmulatorError::State {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                serde_json::from_slice(&bytes).map_err(|e| EmulatorError::State {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            }
            _ => State::default(),
        };
        state.build_ms = config.build_time.as_millis() as u64;
        for name in &config.projects {
            state.create_project(name, None);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            token: config.token.clone(),
            state_file: config.state_file.clone(),
        });
        shared.persist();
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| EmulatorError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.listen,
                source,
            })?;
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
            base_url: format!("http://{addr}"),
            shared,
            stop: Some(stop),
        })
    }

    /// `host:port`, for `connectTo` routes.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    pub fn create_project(&self, name: &str, team: Option<&str>) -> String {
        let id = {
            let mut state = self.shared.lock();
            if let Some(team) = team {
                state.teams.insert(team.to_owned());
            }
            state.create_project(name, team.map(str::to_owned))
        };
        self.shared.persist();
        id
    }

    /// A push to the production branch (see [`promotion::Push`]): the builds it made,
    /// as (project name, deployment id).
    pub fn push(&self, push: &promotion::Push) -> Result<Vec<(String, String)>, String> {
        let built = self.shared.lock().push(push)?;
        self.shared.persist();
        Ok(built)
    }

    /// Turn a project's auto-assignment of production domains on or off, as its owner
    /// would in Vercel's dashboard.
    pub fn set_auto_assign(&self, project: &str, on: bool) {
        let mut state = self.shared.lock();
        let id = state
            .projects
            .values()
            .find(|p| p.name == project || p.id == project)
            .map(|p| p.id.clone());
        if let Some(id) = id {
            let _ = promotion::update_project(
                &mut state,
                &id,
                &serde_json::json!({"autoAssignCustomDomains": on}),
            );
        }
        drop(state);
        self.shared.persist();
    }

    /// Replace the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.shared.lock().faults);
    }

    /// Make rolling releases available on a project or not (a plan without them).
    pub fn set_rolling_releases_available(&self, project: &str, available: bool) {
        {
            let mut state = self.shared.lock();
            if let Some(id) = state.project_id_any_scope(project) {
                state
                    .projects
                    .get_mut(&id)
                    .expect("found above")
                    .rolling_unavailable = !available;
            }
        }
        self.shared.persist();
    }

    /// Set the synthetic traffic that deployments of `sha` (`*` for any) serve.
    pub fn set_traffic(&self, sha: &str, traffic: Traffic) {
        self.update_faults(|f| {
            f.traffic.insert(sha.to_owned(), traffic);
        });
    }

    /// Change the rate limits (endpoint → limit, `None` for none, `*` for every endpoint).
    pub fn set_rate_limits(&self, change: limits::LimitsChange) -> Result<(), String> {
        self.shared.lock().limits.change(change)
    }

    /// Per endpoint: requests let through, refused with 429, and windows filled.
    pub fn rate_limit_stats(&self) -> std::collections::BTreeMap<String, limits::EndpointStats> {
        self.shared.lock().limits.stats.clone()
    }

    /// Requests answered so far (API calls only), and by status.
    pub fn requests(&self) -> u64 {
        self.shared.lock().stats.requests
    }

    pub fn reset_stats(&self) {
        self.shared.lock().stats = state::Stats::default();
    }

    /// Read the state (tests inspect it).
    pub fn with_state<T>(&self, read: impl FnOnce(&State) -> T) -> T {
        let mut state = self.shared.lock();
        state.settle();
        read(&state)
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
