//! The update record: the events the executor writes around each step, and the `record`
//! step that closes a run.

use chrono::Utc;

use super::{Ctx, Scratch, StepError};
use crate::apply::Runner;
use crate::apply::record::{self, Event, EventKind};
use crate::plan::{Plan, Step};
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
        Step::Preflight
        | Step::Backup { .. }
        | Step::RestoreBackup { .. }
        | Step::Verify { .. }
        | Step::Record => {}
    }
}

/// The guide's "update completed successfully" record.
pub async fn complete(
    ctx: &Ctx<'_>,
    session: &mut Session,
    scratch: &Scratch,
) -> Result<(), StepError> {
    let plan = &ctx.prepared.plan;
    let mut e = event(ctx.runner, plan, "apply", EventKind::Completed);
    e.deployment_id = scratch
        .deployment
        .as_ref()
        .map(|d| d.id.clone())
        .or_else(|| {
            plan.steps.iter().find_map(|s| match s {
                Step::Rebake { deployment, .. } => Some(deployment.clone()),
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
    e.detail = Some(format!(
        "completed at {}",
        Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    ));
    record::append(session.connection(), &e).await?;
    Ok(())
}
