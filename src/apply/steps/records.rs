//! The update record: the events the executor writes around each step, and the `record`
//! step that closes a run.

use chrono::Utc;

use super::{Ctx, Db, Scratch, StepError};
use crate::apply::Runner;
use crate::apply::record::{self, Event, EventKind};
use crate::plan::{APPLY, Plan, Step};
use crate::postgres::Session;

/// An event of this run: client, plan hash, release and revision filled in.
pub fn event(runner: &Runner, plan: &Plan, step: &str, kind: EventKind) -> Event {
    let mut e = Event::new(&plan.client, step, kind, &runner.actor);
    e.plan_hash = Some(plan.hash.clone());
    e.release = Some(plan.release.clone());
    e.fleet_revision = runner.revision.clone();
    e
}

/// Versions, env keys and deployment ids go in the record; never values.
pub fn describe(e: &mut Event, step: &Step, scratch: &Scratch) {
    match step {
        Step::MigrateUp { versions, .. } | Step::MigrateDown { versions, .. } => {
            e.versions = versions.iter().map(ToString::to_string).collect()
        }
        Step::SetEnv { changes } => {
            e.env_keys = changes
                .iter()
                .map(|c| format!("{}{}", c.action.sign(), c.key))
                .collect()
        }
        Step::Deploy { .. }
        | Step::WaitReady
        | Step::HealthCheck { .. }
        | Step::Promote { .. }
        | Step::Bake { .. } => {
            e.deployment_id = scratch.deployment.as_ref().map(|d| d.id.clone());
        }
        Step::Rebake { deployment, .. } => e.deployment_id = Some(deployment.clone()),
        Step::CodeRollback { to, .. } => e.deployment_id = Some(to.clone()),
        Step::Repair { version, .. } => e.versions = vec![version.to_string()],
        Step::Baseline { record, .. } => {
            e.versions = record.iter().map(ToString::to_string).collect()
        }
        Step::SchemaReference { version, .. } => {
            e.versions = version.iter().map(ToString::to_string).collect()
        }
        Step::Restore { .. } => e.versions = scratch.undone.clone(),
        Step::Rollout { .. } => {
            e.deployment_id = scratch.deployment.as_ref().map(|d| d.id.clone());
            // Each judged stage with its figures: what the release was judged on.
            if !scratch.rollout.is_empty() {
                e.detail =
                    serde_json::to_string(&serde_json::json!({"stages": scratch.rollout})).ok();
            }
        }
        // The production steward answers for from here on.
        Step::TakeOverPromotion { production } => e.deployment_id = production.clone(),
        Step::Preflight
        | Step::Backup { .. }
        | Step::RestoreBackup { .. }
        | Step::Verify { .. }
        | Step::Pause { .. }
        | Step::Unpause { .. }
        | Step::ClearFailure { .. }
        | Step::Adopt
        | Step::Record => {}
    }
}

/// The guide's "update completed successfully" record, under the plan's command. A
/// request's record says in words what its steps did.
pub async fn complete(ctx: &Ctx<'_>, db: &mut Db, scratch: &Scratch) -> Result<(), StepError> {
    let plan = ctx.plan;
    let mut e = event(ctx.runner, plan, &plan.command, EventKind::Completed);
    e.deployment_id = scratch
        .deployment
        .as_ref()
        .map(|d| d.id.clone())
        .or_else(|| {
            plan.steps.iter().find_map(|s| match s {
                Step::Rebake { deployment, .. } => Some(deployment.clone()),
                Step::CodeRollback { to, .. } => Some(to.clone()),
                _ => None,
            })
        });
    let c = &plan.changes;
    e.versions = c.schema.iter().map(|(_, to)| to.to_string()).collect();
    e.env_keys = c
        .env
        .iter()
        .map(|x| format!("{}{}", x.action.sign(), x.key))
        .collect();
    e.detail = Some(if plan.command == APPLY || scratch.said.is_empty() {
        format!(
            "completed at {}",
            Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
        )
    } else {
        scratch.said.join("; ")
    });
    if plan.command != APPLY {
        e.versions.extend(scratch.undone.iter().cloned());
    }
    match db.records() {
        Some(conn) => {
            record::append(conn, &e).await?;
            if let Some(Step::CodeRollback {
                from: Some(from),
                to,
            }) = plan.steps.first()
            {
                hold_rolled_back(ctx, conn, from, to).await?;
            }
        }
        // Only a run that may go on without its records has no connection for them.
        None => {
            tracing::warn!(client = %plan.client, command = %plan.command, "the client's database cannot be reached; the update record is not written")
        }
    }
    Ok(())
}

/// A release rolled back by hand is judged bad by a person: it is remembered as a failed
/// release (an `apply` `rolled_back` record under its release), so neither the daemon nor
/// `apply` rolls forward to it again until the manifest names another release or
/// `steward retry` clears it. Only a production steward put there is a release to hold.
async fn hold_rolled_back(
    ctx: &Ctx<'_>,
    conn: &mut sqlx::PgConnection,
    from: &str,
    to: &str,
) -> Result<(), StepError> {
    let released: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT plan_hash, release FROM steward_events
         WHERE step = 'apply' AND outcome = 'completed' AND deployment_id = $1
         ORDER BY id DESC LIMIT 1",
    )
    .bind(from)
    .fetch_optional(&mut *conn)
    .await
    .map_err(record::RecordError::from)?;
    let Some((plan_hash, Some(release))) = released else {
        return Ok(());
    };
    let mut e = Event::new(
        &ctx.plan.client,
        APPLY,
        EventKind::RolledBack,
        &ctx.runner.actor,
    );
    e.plan_hash = plan_hash;
    e.release = Some(release);
    e.fleet_revision = ctx.runner.revision.clone();
    e.detail = Some("rollback".to_owned());
    e.error = Some(format!(
        "production rolled back by hand by {} from {from} to {to}",
        ctx.runner.actor
    ));
    record::append(conn, &e).await?;
    Ok(())
}

/// `steward retry`: the Failed state is the newest apply-level failure with nothing
/// after it; a `retry` record after it clears it, and the notifications of the attempt
/// may be sent again. Read again here, under the lock: what is cleared is what is live.
pub async fn clear_failure(
    ctx: &Ctx<'_>,
    session: &mut Session,
    scratch: &mut Scratch,
) -> Result<(), StepError> {
    let conn = session.connection();
    let Some(failure) = record::last_failure(conn).await? else {
        return Err(StepError::Guard(
            "the Failed state was cleared since planning; nothing to retry".to_owned(),
        ));
    };
    let mut e = Event::new(&ctx.plan.client, APPLY, EventKind::Retry, &ctx.runner.actor);
    e.plan_hash = Some(failure.plan_hash.clone());
    e.release = failure.release.clone();
    e.fleet_revision = ctx.runner.revision.clone();
    e.detail = Some(format!("retry after failure at {}", failure.step));
    record::append(conn, &e).await?;
    // A retry is a new attempt: its start and outcome are told again.
    crate::notify::once::forget_attempt(&ctx.plan.client, conn).await?;
    scratch.said.push(format!(
        "Failed state cleared (plan {}); the next apply or daemon loop runs it again",
        failure.plan_hash
    ));
    Ok(())
}
