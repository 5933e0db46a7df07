//! Steps on the client's Vercel project: env, build, health check, promote, bake, and
//! their undos.

use std::time::{Duration, Instant};

use super::{Ctx, Scratch, StepError, bake_interval};
use crate::plan::{Step, Undo};
use crate::secret::{Secret, SecretRef};
use crate::vercel;

pub async fn run(ctx: &Ctx<'_>, step: &Step, scratch: &mut Scratch) -> Result<(), StepError> {
    let health = &ctx.client.config.policy.health;
    let routes = &ctx.fleet.manifest.spec.vercel.connect_to;
    match step {
        Step::SetEnv { changes } => {
            let prepared = ctx.prepared()?;
            let (previous, unknown) = previous_env(ctx).await?;
            scratch.env_unknown = unknown;
            let key = &prepared.fingerprint_key;
            let values: Vec<(String, Secret, bool, String)> = prepared
                .values
                .0
                .iter()
                .map(|(k, v, sensitive, source)| {
                    let fp = crate::secret::fingerprint(key, v.expose());
                    let tag = match source {
                        Some(source) => format!("{fp};src={source}"),
                        None => fp,
                    };
                    (k.clone(), v.clone(), *sensitive, tag)
                })
                .collect();
            let undo = vercel::apply_env(
                &prepared.vercel,
                &prepared.project.id,
                changes,
                &values,
                &previous,
            )
            .await?;
            scratch.env_undo = Some(undo);
        }
        Step::Deploy { sha, .. } => {
            let prepared = ctx.prepared()?;
            let env_changed = prepared
                .plan
                .steps
                .iter()
                .any(|s| matches!(s, Step::SetEnv { .. }));
            let d = vercel::deploy(&prepared.vercel, &prepared.project, sha, env_changed).await?;
            scratch.deployment = Some(d);
        }
        Step::WaitReady => {
            let id = scratch
                .deployment
                .as_ref()
                .map(|d| d.id.clone())
                .ok_or(StepError::Missing("no deployment to wait for"))?;
            let d = vercel::wait_ready(ctx.link()?.api, &id, ctx.runner.build_timeout).await?;
            scratch.deployment = Some(d);
        }
        Step::HealthCheck { .. } => {
            let host = deployment_host(scratch)?;
            vercel::health::check(&host, health, routes).await?;
        }
        Step::Promote { .. } => {
            let id = scratch
                .deployment
                .as_ref()
                .map(|d| d.id.clone())
                .ok_or(StepError::Missing("no deployment to promote"))?;
            let link = ctx.link()?;
            vercel::promote(link.api, &link.project.id, &id).await?;
        }
        Step::Bake { duration } => {
            let host = deployment_host(scratch)?;
            bake(ctx, &host, *duration).await?;
            let baked = scratch.deployment.as_ref().map(|d| d.id.as_str());
            still_production(ctx, baked).await?;
        }
        Step::Rebake {
            deployment,
            duration,
            ..
        } => {
            // The build that is production now (its guard checked that): its own URL, as
            // the interrupted bake checked it.
            let host = ctx
                .prepared()?
                .observed
                .code
                .production
                .as_ref()
                .filter(|p| &p.id == deployment)
                .and_then(|p| p.url.clone())
                .ok_or(StepError::Missing(
                    "the deployment to bake again has no URL",
                ))?;
            bake(ctx, &host, *duration).await?;
            still_production(ctx, Some(deployment)).await?;
        }
        Step::Pause { .. } | Step::Unpause { .. } => {
            let paused = matches!(step, Step::Pause { .. });
            scratch.said.push(set_paused(ctx, paused).await?);
        }
        Step::CodeRollback { from, to } => {
            let link = ctx.link()?;
            vercel::rollback(link.api, &link.project.id, to).await?;
            scratch.said.push(format!(
                "production rolled back to {to} (was {}); Vercel turned auto-assign of production domains off until the next promote",
                from.as_deref().unwrap_or("(none)")
            ));
        }
        Step::TakeOverPromotion { production } => {
            let link = ctx.link()?;
            vercel::set_auto_promote(link.api, &link.project.id, false).await?;
            scratch.said.push(format!(
                "promotion taken over: auto-assignment of production domains turned off (undo: turn it back on, autoAssignCustomDomains: true); a push to the production branch now builds staged, and steward promotes{}",
                production
                    .as_ref()
                    .map_or(String::new(), |d| format!(" (production now: {d})"))
            ));
        }
        Step::Preflight
        | Step::Backup { .. }
        | Step::MigrateUp { .. }
        | Step::MigrateDown { .. }
        | Step::RestoreBackup { .. }
        | Step::Verify { .. }
        | Step::Restore { .. }
        | Step::Repair { .. }
        | Step::ClearFailure { .. }
        | Step::Rollout { .. }
        | Step::Adopt
        | Step::Baseline { .. }
        | Step::SchemaReference { .. }
        | Step::Record => unreachable!("{} is not a Vercel step", step.kind()),
    }
    Ok(())
}

/// A bake judges the release that serves production: when production moved during it
/// (rolled back by hand, promoted by someone else), the release was not baked in
/// production and is not recorded as such. The run fails there, so the release is held
/// as failed rather than promoted again by the next pass.
async fn still_production(ctx: &Ctx<'_>, baked: Option<&str>) -> Result<(), StepError> {
    let link = ctx.link()?;
    let project = link.api.project(&link.project.id).await?;
    let now = project.production().map(|d| d.id.as_str());
    if now == baked {
        return Ok(());
    }
    Err(StepError::Guard(format!(
        "production moved to {} during the bake (rolled back by hand, or promoted by someone else); this release is not recorded as baked",
        now.unwrap_or("(none)")
    )))
}

/// Health-check `host` every few seconds for `duration`. Shutdown ends it early as
/// unfinished, so the next run bakes again rather than record a bake that did not happen.
async fn bake(ctx: &Ctx<'_>, host: &str, duration: Duration) -> Result<(), StepError> {
    let health = &ctx.client.config.policy.health;
    let routes = &ctx.fleet.manifest.spec.vercel.connect_to;
    let until = Instant::now() + duration;
    let every = bake_interval(duration);
    loop {
        vercel::health::check(host, health, routes)
            .await
            .map_err(StepError::Bake)?;
        if Instant::now() >= until {
            return Ok(());
        }
        if ctx.runner.stopping() {
            return Err(StepError::Stopped("bake"));
        }
        tokio::time::sleep(every.min(until.saturating_duration_since(Instant::now()))).await;
    }
}

fn deployment_host(scratch: &Scratch) -> Result<String, StepError> {
    scratch
        .deployment
        .as_ref()
        .and_then(|d| d.url.clone())
        .ok_or(StepError::Missing("the deployment has no URL"))
}

/// The values an env undo puts back. A sensitive value cannot be read back: it is re-read
/// from the secret reference the previous revision wrote it from, if steward's
/// environment still holds that exact value.
/// Also returns, for each sensitive value that cannot be re-read, its name and the
/// reference it came from (what an undo that cannot put it back names).
async fn previous_env(
    ctx: &Ctx<'_>,
) -> Result<(Vec<(String, Secret, bool, String)>, Vec<(String, String)>), StepError> {
    let prepared = ctx.prepared()?;
    let current = prepared.vercel.env_values(&prepared.project.id).await?;
    let key = &prepared.fingerprint_key;
    let mut unknown = Vec::new();
    let known = current
        .into_iter()
        .filter_map(|(name, value, kind, comment)| match value {
            Some(value) => {
                let fp = crate::secret::fingerprint(key, &value);
                Some((name, Secret::new(value), kind == "sensitive", fp))
            }
            None => {
                let (fp, source) = vercel::comment_source(comment.as_deref())?;
                let value = SecretRef::env(source.clone()).resolve().ok();
                match value {
                    Some(v) if crate::secret::fingerprint(key, v.expose()) == fp => {
                        Some((name, v, true, format!("{fp};src={source}")))
                    }
                    _ => {
                        tracing::warn!(
                            env = %name,
                            source = %source,
                            "the previous value of this sensitive variable is no longer in steward's environment; an undo cannot restore it"
                        );
                        unknown.push((name, source));
                        None
                    }
                }
            }
        })
        .collect();
    Ok((known, unknown))
}

pub async fn undo(ctx: &Ctx<'_>, action: &Undo, scratch: &Scratch) -> Result<(), StepError> {
    let link = ctx.link()?;
    match action {
        Undo::RestoreEnv => {
            if let Some(undo) = &scratch.env_undo {
                vercel::undo_env(link.api, &link.project.id, undo).await?;
                // What could be put back is; what could not is an undo that failed, never
                // one recorded as done.
                if !undo.lost().is_empty() {
                    let lost: Vec<String> = undo
                        .lost()
                        .iter()
                        .map(|key| {
                            match scratch.env_unknown.iter().find(|(k, _)| k == key) {
                                Some((_, source)) => format!(
                                    "{key} (its secret reference {source} no longer holds the previous value)"
                                ),
                                None => format!("{key} (its previous value is not known)"),
                            }
                        })
                        .collect();
                    return Err(StepError::Undo(format!(
                        "not put back: {}; the rest of the env is restored; set these by hand in the project",
                        lost.join(", ")
                    )));
                }
            }
        }
        Undo::PromotePrevious { deployment } => {
            if let Some(previous) = deployment {
                // Production is put back only from what this run put there: a production
                // someone else moved meanwhile is theirs, and is left as it is (and said).
                let project = link.api.project(&link.project.id).await?;
                let now = project.production().map(|d| d.id.as_str());
                let ours = scratch.deployment.as_ref().map(|d| d.id.as_str());
                if now == Some(previous.as_str()) {
                    return Ok(());
                }
                if ours.is_some() && now != ours {
                    return Err(StepError::Undo(format!(
                        "production is {}, not this run's {}: someone else moved it, so it is left as it is",
                        now.unwrap_or("(none)"),
                        ours.unwrap_or("(none)")
                    )));
                }
                vercel::rollback(link.api, &link.project.id, previous).await?;
            }
        }
        Undo::Pause | Undo::Unpause => {
            set_paused(ctx, *action == Undo::Pause).await?;
        }
        Undo::RestoreAutoPromotion => {
            let link = ctx.link()?;
            vercel::set_auto_promote(link.api, &link.project.id, true).await?;
        }
        Undo::Nothing
        | Undo::MigrateDownTo { .. }
        | Undo::MigrateUpTo { .. }
        | Undo::RestoreTakenBackup
        | Undo::AbortRollout { .. }
        | Undo::ForgetIdentity => unreachable!("not a Vercel undo"),
    }
    Ok(())
}

/// Pause or unpause the project, confirmed; says what it did.
async fn set_paused(ctx: &Ctx<'_>, paused: bool) -> Result<String, StepError> {
    let link = ctx.link()?;
    vercel::set_paused(link.api, &link.project.id, paused).await?;
    let project = &link.project.name;
    Ok(if paused {
        format!(
            "project {project} paused: every deployment answers 503 until `steward unpause {}`",
            ctx.name()
        )
    } else {
        format!("project {project} unpaused: production serves again")
    })
}
