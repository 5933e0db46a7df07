//! An operator's request (`backup`, `restore`, `repair`, `retry`, `pause`, `unpause`,
//! `rollback --code`, `migrate`, `adopt`, `drift accept`) as a plan run by the one executor: observe what the request acts
//! on, plan it (`plan::request`), and run the steps with the same guards, intent and
//! outcome records and undo as a converge. A dry run is the same look and the same plan,
//! read-only, so the two cannot disagree.

use sqlx::PgConnection;

use super::execute::run_steps;
use super::steps::{Ctx, Db, Link};
use super::{ApplyError, Outcome, Runner, observe};
use crate::manifest::{BackupPolicy, DestructivePolicy};
use crate::manifest::{Client, Fleet, NotifyEvent};
use crate::migrations::lint;
use crate::notify::Message;
use crate::plan::request::{self, MigrationRun, Request, RequestObserved, RequestPolicy, RowMark};
use crate::plan::{Block, Plan};
use crate::postgres::{self, Access, Session, Status, backup};
use crate::secret::Secret;
use crate::vercel::{self, VercelClient};

/// A request's plan and what running it needs.
#[derive(Debug)]
pub struct Looked {
    pub plan: Plan,
    database_url: Secret,
    vercel: Option<(VercelClient, vercel::Project)>,
}

/// The plan a request would run, read-only (`--dry-run`): the same look as the run's,
/// on a read-only connection instead of the locked one.
pub async fn plan(fleet: &Fleet, client: &Client, request: &Request) -> Result<Plan, ApplyError> {
    let name = &client.config.name;
    let url = database_url(client)?;
    if !request.locks_database() {
        return Ok(look(fleet, client, request, url, None).await?.plan);
    }
    let mut conn = postgres::connect(name, &url, Access::ReadOnly).await?;
    let looked = look(fleet, client, request, url, Some(&mut conn)).await;
    postgres::close(conn).await;
    Ok(looked?.plan)
}

/// Take the client's lock, look and plan under it, and run the plan. The look is made on
/// the locked connection itself, so the identity it judges is the one the steps write to
/// and nothing can move between the look and the first guard. The traffic switches take
/// no lock (an emergency stop does not wait for a bake to finish) and record on a plain
/// connection when the database answers.
pub async fn execute(
    runner: &Runner,
    fleet: &Fleet,
    client: &Client,
    request: &Request,
) -> Result<Outcome, ApplyError> {
    let name = &client.config.name;
    let url = database_url(client)?;
    let mut db = if request.locks_database() {
        // The identity is judged by the plan (a block in the same words as the dry run),
        // on this same connection, before anything is written.
        Db::Locked(Session::lock(name, &url, runner.lock_timeout).await?)
    } else {
        match postgres::connect(name, &url, Access::ReadWrite).await {
            Ok(conn) => Db::Records(Some(conn)),
            Err(err) => {
                tracing::warn!(client = %name, error = %err, "the client's database cannot be reached; the change goes on unrecorded");
                Db::Records(None)
            }
        }
    };
    let conn = match &mut db {
        Db::Locked(session) => Some(session.connection()),
        Db::Records(_) => None,
    };
    let looked = match look(fleet, client, request, url, conn).await {
        Ok(looked) => looked,
        Err(err) => {
            db.close().await;
            return Err(err);
        }
    };
    let plan = &looked.plan;
    if plan.steps.is_empty() || !plan.runnable() {
        db.close().await;
        return Ok(if plan.blocks.is_empty() && plan.steps.is_empty() {
            Outcome::Converged(looked.plan)
        } else {
            Outcome::NotRun(looked.plan)
        });
    }
    if let Db::Locked(session) = &mut db
        && let Err(err) = session.ready().await
    {
        db.close().await;
        return Err(err.into());
    }
    let ctx = Ctx {
        runner,
        fleet,
        client,
        plan,
        database_url: &looked.database_url,
        vercel: looked
            .vercel
            .as_ref()
            .map(|(api, project)| Link { api, project }),
        converge: None,
    };
    let outcome = run_steps(&ctx, &mut db).await;
    db.close().await;
    outcome
}

fn database_url(client: &Client) -> Result<Secret, ApplyError> {
    client
        .config
        .database
        .url
        .resolve()
        .map_err(|e| ApplyError::Config {
            client: client.config.name.clone(),
            message: format!("spec.database.url: {e}"),
        })
}

/// Observe what the request acts on and plan it. `conn` reads the database (`None` for
/// the requests that do not).
async fn look(
    fleet: &Fleet,
    client: &Client,
    request: &Request,
    database_url: Secret,
    conn: Option<&mut PgConnection>,
) -> Result<Looked, ApplyError> {
    let name = &client.config.name;
    let policy = RequestPolicy {
        backup_first: client.config.policy.backup == BackupPolicy::Required,
        destructive_allowed: client.config.policy.destructive == DestructivePolicy::Allow,
        take_over_promotion: client.config.policy.take_over_promotion,
        pinned: client.config.database.identity,
    };
    let mut seen = RequestObserved::default();
    if let Some(conn) = conn {
        let (state, failure) = postgres::observe_on(conn, name, &client.config.database).await?;
        seen.identity = Some(state.identity.clone());
        seen.current = state.current.clone();
        seen.failure = failure;
        seen.has_reference = state.has_reference;
        seen.notes
            .extend(state.request_interrupted.iter().map(ToString::to_string));
        seen.production_recorded = !state.promoted.is_empty();
        seen.drift = crate::plan::drift::changes(state.drift.as_ref())
            .iter()
            .map(ToString::to_string)
            .collect();
        match request {
            Request::Adopt {
                baseline: Some(version),
                ..
            } => {
                match postgres::baseline::check(conn, name, &fleet.catalog, &state.rows, version)
                    .await
                {
                    Ok(checked) => {
                        seen.baseline = Some(request::BaselineRun {
                            version: checked.version,
                            confirmed: checked.confirmed.len(),
                            kept: checked.kept,
                            record: checked.record,
                        })
                    }
                    Err(err) if err.is_refusal() => seen.refusals.push(Block::Baseline {
                        reason: without_client(name, &err),
                    }),
                    Err(err) => return Err(err.into()),
                }
            }
            Request::Repair { version, mark } => {
                let status = match mark {
                    RowMark::Applied => Status::Applied,
                    RowMark::RolledBack => Status::RolledBack,
                };
                match postgres::repair::check(&fleet.catalog, &state.rows, version, status) {
                    Ok(row) => seen.row_status = Some(row.status.clone()),
                    Err(refusal) => seen.refusals.push(Block::Repair {
                        reason: refusal.to_string(),
                    }),
                }
            }
            Request::Migrate { to } => {
                if !fleet.catalog.contains(to) {
                    return Err(ApplyError::Config {
                        client: name.clone(),
                        message: format!(
                            "version {to} is not in the migrations folder {}",
                            fleet.catalog.dir.display()
                        ),
                    });
                }
                // The one judge of a run: the same path the runner takes under its lock.
                match postgres::path::towards(name, &fleet.catalog, &state.rows, to) {
                    Ok(path) => {
                        let up = path.direction == postgres::Direction::Up;
                        seen.run = Some(MigrationRun {
                            up,
                            from: path.from.clone(),
                            versions: path.versions(),
                            destructive: path
                                .migrations
                                .iter()
                                .flat_map(|m| {
                                    let findings = if up {
                                        lint::lint(m)
                                    } else {
                                        lint::lint_down(m)
                                    };
                                    findings
                                        .into_iter()
                                        .filter(lint::Finding::is_destructive)
                                        .map(|f| (m.version.clone(), f.to_string()))
                                        .collect::<Vec<_>>()
                                })
                                .collect(),
                        });
                    }
                    Err(err) if err.is_refusal() => seen.refusals.push(Block::Run {
                        reason: without_client(name, &err),
                    }),
                    Err(err) => return Err(err.into()),
                }
            }
            Request::Restore { backup: id, .. } => {
                backup::sync(name, &fleet.backups_dir).await?;
                let (info, file) = backup::find(name, &fleet.backups_dir, id)?;
                let checked = match backup::check(name, &fleet.backups_dir, &info, &file).await {
                    Ok(()) => postgres::check_dump_identity(conn, name, &file).await,
                    Err(err) => Err(err),
                };
                match checked {
                    Ok(()) => {}
                    Err(err) if err.is_refusal() => seen.refusals.push(Block::Backup {
                        reason: without_client(name, &err),
                    }),
                    Err(err) => return Err(err.into()),
                }
                seen.backup_version = Some(info.version());
                // The step names the backup it read, `latest` resolved.
                let resolved = Request::Restore {
                    backup: info.id.clone(),
                    pause_traffic: matches!(
                        request,
                        Request::Restore {
                            pause_traffic: true,
                            ..
                        }
                    ),
                };
                let vercel = link(fleet, client, &resolved, &mut seen).await?;
                return Ok(Looked {
                    plan: request::plan(name, &resolved, &seen, policy),
                    database_url,
                    vercel,
                });
            }
            Request::Adopt { baseline: None, .. }
            | Request::DriftAccept
            | Request::Backup
            | Request::Retry
            | Request::Pause
            | Request::Unpause
            | Request::RollbackCode { .. } => {}
        }
    }
    let vercel = match request {
        Request::Adopt {
            take_over_promotion,
            ..
        } => promotion(fleet, client, *take_over_promotion, &mut seen).await?,
        _ => link(fleet, client, request, &mut seen).await?,
    };
    Ok(Looked {
        plan: request::plan(name, request, &seen, policy),
        database_url,
        vercel,
    })
}

/// A refusal's words without the `client NAME: ` the command's message starts with.
fn without_client(client: &str, err: &postgres::PgError) -> String {
    let text = err.to_string();
    text.strip_prefix(&format!("client {client}: "))
        .map_or_else(|| text.clone(), str::to_owned)
}

/// The client's Vercel project, when the request uses it: its name, whether it is
/// paused, production and the deployment before it.
async fn link(
    fleet: &Fleet,
    client: &Client,
    request: &Request,
    seen: &mut RequestObserved,
) -> Result<Option<(VercelClient, vercel::Project)>, ApplyError> {
    if !request.uses_vercel() {
        return Ok(None);
    }
    let name = &client.config.name;
    let api = observe::vercel_client(fleet)?.for_client(name);
    let project = api
        .project(&client.config.code.project)
        .await
        .map_err(ApplyError::vercel(name))?;
    seen.project = Some(project.name.clone());
    seen.paused = project.paused.unwrap_or(false);
    seen.production = project.production().map(|d| d.id.clone());
    seen.previous = project
        .last_alias_request
        .as_ref()
        .and_then(|r| r.from_deployment_id.clone());
    Ok(Some((api, project)))
}

/// What a run that failed, or could not run, tells the fleet's webhooks (and the client):
/// the rollback and the failure, with any undo that could not put something back; an
/// error that is not a refusal as a failure. Nothing for any other outcome. Every command
/// and the CLI `apply` announce failures through this.
pub fn failure_notices(
    client: &str,
    outcome: &Result<Outcome, ApplyError>,
    revision: Option<String>,
) -> Vec<Message> {
    match outcome {
        Ok(Outcome::Failed {
            plan,
            step,
            error,
            undo,
            undo_errors,
            ..
        }) => crate::notify::failed_run(plan, step, error, undo.run.len(), undo_errors, revision),
        Err(err) if !err.is_refusal() => {
            vec![Message::failure(client, &err.to_string(), None, revision)]
        }
        _ => Vec::new(),
    }
}

/// `adopt`'s look at the project's promotion setting and production, from one read. A
/// Vercel that cannot be reached, or is not configured here (no token in this
/// environment), does not stop adopting the database: the plan says so, and the first
/// converge plan checks it again. Taking promotion over needs it.
async fn promotion(
    fleet: &Fleet,
    client: &Client,
    take_over: bool,
    seen: &mut RequestObserved,
) -> Result<Option<(VercelClient, vercel::Project)>, ApplyError> {
    let name = &client.config.name;
    let looked = match observe::vercel_client(fleet) {
        Ok(api) => {
            let api = api.for_client(name);
            vercel::observe(&api, &client.config.code.project)
                .await
                .map(|observation| (api, observation))
                .map_err(ApplyError::vercel(name))
        }
        Err(err) => Err(err),
    };
    match looked {
        Ok((api, observation)) => {
            seen.auto_promote = Some(observation.code.auto_promote);
            seen.project = Some(observation.project.name.clone());
            seen.production = observation.code.production.map(|d| d.id);
            Ok(Some((api, observation.project)))
        }
        Err(err) if take_over => Err(ApplyError::Refused {
            client: name.clone(),
            message: format!("cannot take over promotion: the project could not be read: {err}"),
        }),
        Err(err) => {
            seen.notes.push(format!(
                "the project's promotion setting could not be read ({err}); `steward plan {name}` checks it"
            ));
            Ok(None)
        }
    }
}

/// What the fleet's webhooks and the client hear about a request's run: a change by hand
/// to what serves (pause, unpause, restore, rollback) on the `rollback` event, as before;
/// a failure, and the undo it caused, as the daemon's are told.
pub fn announce(
    plan_client: &str,
    outcome: &Result<Outcome, ApplyError>,
    actor: &str,
    revision: Option<String>,
) -> Vec<Message> {
    match outcome {
        Ok(Outcome::Applied { plan, .. }) => {
            // A change by hand to what serves (or to the data it serves) is told on
            // `rollback`. Adopting and accepting drift change what steward trusts, not
            // what runs: they are on record (`steward history`), and told only on failure.
            let (icon, what) = match plan.command.as_str() {
                "pause" => ("⏸️", "traffic paused"),
                "unpause" => ("▶️", "traffic let through again"),
                "restore" => ("↩️", "database restored"),
                "rollback" => ("↩️", "production rolled back"),
                _ => return Vec::new(),
            };
            let steps: Vec<String> = plan
                .steps
                .iter()
                .filter(|s| s.changes())
                .map(ToString::to_string)
                .collect();
            vec![Message::manual(
                NotifyEvent::Rollback,
                plan_client,
                format!(
                    "steward: {icon} `{plan_client}` {what} by hand by {actor}: {}",
                    steps.join("; ")
                ),
                revision,
            )]
        }
        outcome => failure_notices(plan_client, outcome, revision),
    }
}
