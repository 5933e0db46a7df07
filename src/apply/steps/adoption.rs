//! Steps that settle what steward knows of a database rather than change its schema:
//! `adopt` (its identity), `baseline` (versions migrated by hand, shown by their
//! `.verify.sql`), and the schema reference drift is measured against. Each has a guard
//! that reads the same thing its plan judged, on the locked session, right before it.

use super::{Ctx, Scratch, StepError};
use crate::plan::{Step, drift};
use crate::postgres::{self, Session, drift::Reason};

pub async fn run(
    ctx: &Ctx<'_>,
    session: &mut Session,
    step: &Step,
    scratch: &mut Scratch,
) -> Result<(), StepError> {
    let name = ctx.name();
    match step {
        Step::Adopt => {
            let identity = postgres::adopt(session.connection(), name, &ctx.runner.actor).await?;
            scratch
                .said
                .push(format!("database adopted, identity {}", identity.id));
            scratch.adopted = Some(identity.id);
        }
        Step::Baseline {
            version, record, ..
        } => {
            let checked = baseline(ctx, session, version).await?;
            session
                .record_baseline(&ctx.fleet.catalog, &checked, ctx.actor())
                .await?;
            scratch.said.push(format!(
                "baseline {version}: {} version(s) recorded as applied",
                record.len()
            ));
        }
        Step::SchemaReference { version, accepted } => {
            // `adopt` records the schema as it found it; anything else is a person's
            // acceptance of what they reviewed.
            let reason = if ctx.plan.command == "adopt" {
                Reason::Adopt
            } else {
                Reason::Accept
            };
            session
                .record_schema(version.as_ref(), reason, ctx.actor())
                .await?;
            scratch.said.push(if accepted.is_empty() {
                "the live schema is now the reference drift is measured against".to_owned()
            } else {
                format!(
                    "accepted schema drift as the reference: {}",
                    accepted.join("; ")
                )
            });
        }
        Step::Preflight
        | Step::Backup { .. }
        | Step::MigrateUp { .. }
        | Step::MigrateDown { .. }
        | Step::RestoreBackup { .. }
        | Step::Verify { .. }
        | Step::SetEnv { .. }
        | Step::Deploy { .. }
        | Step::WaitReady
        | Step::HealthCheck { .. }
        | Step::Promote { .. }
        | Step::Rollout { .. }
        | Step::Bake { .. }
        | Step::Rebake { .. }
        | Step::TakeOverPromotion { .. }
        | Step::Record
        | Step::Pause { .. }
        | Step::Unpause { .. }
        | Step::Restore { .. }
        | Step::Repair { .. }
        | Step::CodeRollback { .. }
        | Step::ClearFailure { .. } => {
            unreachable!("{} is not an adoption step", step.kind())
        }
    }
    Ok(())
}

/// The guard of `adopt`: no identity has been written since planning.
pub async fn check_not_adopted(ctx: &Ctx<'_>, session: &mut Session) -> Result<(), StepError> {
    match postgres::read_identity(session.connection(), ctx.name()).await? {
        None => Ok(()),
        Some(found) => Err(StepError::Guard(format!(
            "the database was adopted by client `{}` ({}) since planning; not adopting it again",
            found.client, found.id
        ))),
    }
}

/// The guard of `baseline`: the rows and verify files still allow exactly the versions
/// the plan showed.
pub async fn check_baseline(
    ctx: &Ctx<'_>,
    session: &mut Session,
    step: &Step,
) -> Result<(), StepError> {
    let Step::Baseline {
        version, record, ..
    } = step
    else {
        return Err(StepError::Missing(
            "the baseline guard belongs to a baseline step",
        ));
    };
    let checked = baseline(ctx, session, version).await?;
    if checked.record == *record {
        Ok(())
    } else {
        Err(StepError::Guard(format!(
            "system_versions changed since planning: baseline {version} would now record {} version(s), not {}; plan again",
            checked.record.len(),
            record.len()
        )))
    }
}

/// The guard of a schema reference: the live schema differs from the reference by what
/// was shown, no more (what is accepted is what was reviewed).
pub async fn check_drift(
    ctx: &Ctx<'_>,
    session: &mut Session,
    shown: &[String],
) -> Result<(), StepError> {
    let (state, _) = postgres::observe_on(
        session.connection(),
        ctx.name(),
        &ctx.client.config.database,
    )
    .await?;
    let now: Vec<String> = drift::changes(state.drift.as_ref())
        .iter()
        .map(ToString::to_string)
        .collect();
    if now == shown {
        Ok(())
    } else {
        Err(StepError::Guard(format!(
            "the live schema changed since it was shown (now: {}); review it again with `steward drift {}`",
            if now.is_empty() {
                "no drift".to_owned()
            } else {
                now.join("; ")
            },
            ctx.name()
        )))
    }
}

/// Undo `adopt`: remove the identity this run wrote, and only that one.
pub async fn forget_identity(
    ctx: &Ctx<'_>,
    session: &mut Session,
    scratch: &Scratch,
) -> Result<(), StepError> {
    let Some(id) = scratch.adopted else {
        return Ok(());
    };
    sqlx::query("DELETE FROM steward_identity WHERE client = $1 AND id = $2")
        .bind(ctx.name())
        .bind(id)
        .execute(session.connection())
        .await
        .map_err(postgres::PgError::query(
            ctx.name(),
            "removing the identity this run wrote",
        ))?;
    Ok(())
}

async fn baseline(
    ctx: &Ctx<'_>,
    session: &mut Session,
    version: &crate::migrations::Version,
) -> Result<postgres::Baseline, StepError> {
    let rows = session.latest_rows().await?;
    let name = ctx.name().to_owned();
    Ok(postgres::baseline::check(
        session.connection(),
        &name,
        &ctx.fleet.catalog,
        &rows,
        version,
    )
    .await?)
}
