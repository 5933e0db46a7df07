//! Observing one client and planning it: the read-only half of a run, shared by
//! `steward plan`, `apply --dry-run`, `status`, `apply` and the daemon.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::ApplyError;
use super::cache::{self, SchemaCache};
use super::desired::{self, DesiredError, EnvValues};
use crate::github::{GithubAuth, GithubClient, Repo};
use crate::manifest::{Client, CodeVersion, Fleet, RehearsePolicy};
use crate::migrations::{Version, lint};
use crate::plan::{self, Context, Desired, LintSummary, Mode, Observed, Plan};
use crate::postgres;
use crate::secret::{Secret, SecretRef};
use crate::vercel::{self, VercelClient};

/// Everything a run knows about one client before it changes anything.
#[derive(Debug)]
pub struct Prepared {
    pub desired: Desired,
    pub values: EnvValues,
    pub observed: Observed,
    pub plan: Plan,
    pub vercel: VercelClient,
    pub project: vercel::Project,
    pub database_url: Secret,
    pub fingerprint_key: Secret,
}

/// The fleet's Vercel client (token from its secret ref).
pub fn vercel_client(fleet: &Fleet) -> Result<VercelClient, ApplyError> {
    let spec = &fleet.manifest.spec.vercel;
    let fleet_error = |message: String| ApplyError::FleetConfig {
        file: fleet.file.display().to_string(),
        message,
    };
    let token = spec
        .token
        .resolve()
        .map_err(|e| fleet_error(format!("spec.vercel.token: {e}")))?;
    VercelClient::new(&spec.api_url, token, spec.team.clone())
        .map_err(|e| fleet_error(format!("spec.vercel: {e}")))
}

/// What lint says about a version, for the planner.
pub fn lint_summary(fleet: &Fleet) -> impl Fn(&Version) -> LintSummary + '_ {
    move |version| {
        let Some(m) = fleet.catalog.get(version) else {
            return LintSummary::default();
        };
        let up = lint::lint(m);
        LintSummary {
            destructive_up: up
                .iter()
                .filter(|f| f.is_destructive())
                .map(ToString::to_string)
                .collect(),
            destructive_down: lint::lint_down(m)
                .iter()
                .filter(|f| f.is_destructive())
                .map(ToString::to_string)
                .collect(),
            warnings: up
                .iter()
                .filter(|f| !f.is_destructive() && f.kind != lint::FindingKind::Error)
                .map(ToString::to_string)
                .collect(),
            transaction_control_up: lint::transaction_control(&m.up)
                .iter()
                .map(ToString::to_string)
                .collect(),
            transaction_control_down: m
                .down
                .iter()
                .flat_map(lint::transaction_control)
                .map(|f| f.to_string())
                .collect(),
        }
    }
}

/// How long a tag's commit is trusted before GitHub is asked again: tags rarely move, and
/// a fleet of clients on one tag must not cost one GitHub request each per pass.
const TAG_TTL: Duration = Duration::from_secs(300);

/// (API URL, repository, tag).
type TagKey = (String, String, String);

/// The commit to run: the manifest's sha, or its tag resolved through `spec.github`.
pub async fn resolve_code(fleet: &Fleet, client: &Client) -> Result<String, ApplyError> {
    static CACHE: Mutex<BTreeMap<TagKey, (Instant, String)>> = Mutex::new(BTreeMap::new());
    let name = &client.config.name;
    let tag = match &client.config.code.version {
        CodeVersion::Sha(sha) => return Ok(sha.clone()),
        CodeVersion::Tag(tag) => tag,
    };
    let Some(github) = &fleet.manifest.spec.github else {
        return Err(DesiredError::TagWithoutGithub {
            client: name.clone(),
            tag: tag.clone(),
        }
        .into());
    };
    let key = (github.api_url.clone(), github.repo.clone(), tag.clone());
    let cached = CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .filter(|(at, _)| at.elapsed() < TAG_TTL)
        .map(|(_, sha)| sha.clone());
    if let Some(sha) = cached {
        return Ok(sha);
    }
    let tag_error = |message: String| -> ApplyError {
        DesiredError::Tag {
            client: name.clone(),
            message,
        }
        .into()
    };
    let token = match &github.token {
        Some(reference) => reference
            .resolve()
            .map_err(|e| tag_error(format!("spec.github.token: {e}")))?,
        None => SecretRef::env("GITHUB_TOKEN").resolve().map_err(|_| {
            tag_error(format!(
                "code.version is tag `{tag}`: resolving it needs a GitHub token (spec.github.token, or GITHUB_TOKEN)"
            ))
        })?,
    };
    let repo: Repo = github
        .repo
        .parse()
        .map_err(|e| tag_error(format!("spec.github.repo: {e}")))?;
    let gh = GithubClient::new(&github.api_url, &GithubAuth::Token(token))
        .map_err(|e| tag_error(e.to_string()))?;
    let sha = gh
        .resolve_tag(&repo, tag)
        .await
        .map_err(|e| tag_error(format!("code.version: {e}")))?;
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, (Instant::now(), sha.clone()));
    Ok(sha)
}

/// `policy.rehearse: required`, migrations to run up, and a database that is this
/// client's and clean (otherwise the plan is blocked anyway, and the copy would be too).
fn needs_rehearsal(client: &Client, schema: &plan::SchemaObserved) -> bool {
    let target = &client.config.database.schema_version;
    client.config.policy.rehearse == RehearsePolicy::Required
        && schema.current.as_ref().is_none_or(|c| c < target)
        && schema.identity == plan::IdentityObserved::Matches
        && schema.unfinished.is_empty()
}

/// Observe (read-only) and plan one client.
pub async fn prepare(
    fleet: &Fleet,
    client: &Client,
    vercel: &VercelClient,
    mode: Mode,
    wave_blocked: Option<String>,
    revision: Option<String>,
    cache: Option<&SchemaCache>,
) -> Result<Prepared, ApplyError> {
    let name = &client.config.name;
    let key = fleet
        .manifest
        .spec
        .fingerprint_key
        .resolve()
        .map_err(|e| ApplyError::Config {
            client: name.clone(),
            message: format!("spec.fingerprintKey: {e}"),
        })?;
    let sha = resolve_code(fleet, client).await?;
    let (desired, values) = desired::build(client, &key, sha, revision)?;
    let url = client
        .config
        .database
        .url
        .resolve()
        .map_err(|e| ApplyError::Config {
            client: name.clone(),
            message: format!("spec.database.url: {e}"),
        })?;
    let cache_key = cache::key(&url, &client.config.database);
    let cached = cache.and_then(|c| c.get(name, cache_key));
    let live = cached.is_none();
    // Only the daemon passes a cache; `apply`, `plan` and the look under the lock do not.
    let (schema, failure) = match cached {
        Some(seen) => seen,
        None => {
            if let Some(cache) = cache {
                cache.count_live();
            }
            postgres::observe(name, &url, &client.config.database).await?
        }
    };
    let mut observation = vercel::observe(vercel, &client.config.code.project)
        .await
        .map_err(ApplyError::vercel(name))?;
    // Whether rolling releases are available is asked only when new code is to be
    // released under `policy.rollout`: a steady pass stays one Vercel request.
    let new_code = observation
        .code
        .production
        .as_ref()
        .and_then(|p| p.sha.as_deref())
        != Some(desired.sha.as_str());
    if client.config.policy.rollout.is_some() && new_code {
        observation.code.rolling_releases = match vercel
            .rolling_availability(&observation.project.id)
            .await
            .map_err(ApplyError::vercel(name))?
        {
            vercel::rolling::Availability::Available { .. } => plan::RollingReleases::Available,
            vercel::rolling::Availability::Unavailable { code, message } => {
                plan::RollingReleases::Unavailable {
                    reason: format!("Vercel {code}: {message}"),
                }
            }
        };
    }
    let mut schema_observed = schema.to_observed();
    schema_observed.last_backup = postgres::backup::list(name, &fleet.backups_dir)?
        .into_iter()
        .next()
        .map(|b| plan::BackupObserved {
            id: b.id.clone(),
            version: b.version(),
            created_at: b.created_at,
        });
    let rehearsal = if needs_rehearsal(client, &schema_observed) {
        let current = schema_observed.current.clone();
        Some(super::rehearsal::rehearse_for_plan(fleet, client, &url, current.as_ref()).await?)
    } else {
        None
    };
    let mut code = observation.code;
    code.promoted_by_steward = schema.promoted.clone();
    let observed = Observed {
        schema: schema_observed,
        code,
        env: observation.env,
        failure,
        rehearsal,
        interrupted: schema.interrupted.clone(),
        request_interrupted: schema.request_interrupted.clone(),
    };
    let ctx = Context {
        now: Utc::now(),
        mode,
        wave_blocked,
    };
    let plan = plan::plan(
        &desired,
        &observed,
        &fleet.catalog,
        &lint_summary(fleet),
        &ctx,
    );
    // Remember only live looks that planned nothing; a reused look keeps its first time,
    // so `--db-resync` bounds its age. Anything to do means looking live next time.
    if let Some(cache) = cache {
        if !plan.steps.is_empty() {
            cache.forget(name);
        } else if live {
            cache.put(name, cache_key, schema, observed.failure.clone());
        }
    }
    Ok(Prepared {
        desired,
        values,
        observed,
        plan,
        vercel: vercel.clone(),
        project: observation.project,
        database_url: url,
        fingerprint_key: key,
    })
}
