//! Steps on the client's database: preflight, backup, migrate up and down, restore,
//! verify, and their undos. All run on the session that holds the client's lock.

use super::{Ctx, Scratch, StepError};
use crate::plan::{Step, Undo};
use crate::postgres::{self, Actor, Session};

pub async fn run(
    ctx: &Ctx<'_>,
    session: &mut Session,
    step: &Step,
    scratch: &mut Scratch,
) -> Result<(), StepError> {
    let fleet = ctx.fleet;
    let name = ctx.name();
    match step {
        Step::Preflight => {
            session.guard_clean(&fleet.catalog).await?;
        }
        Step::Backup { version } => {
            let info = postgres::backup::take(
                name,
                &ctx.prepared.database_url,
                &fleet.backups_dir,
                version.as_ref(),
            )
            .await?;
            scratch.backup = Some(info.id);
        }
        Step::MigrateUp { to, .. } => {
            session.migrate_up(&fleet.catalog, to, ctx.actor()).await?;
        }
        Step::MigrateDown { to, .. } => {
            session
                .migrate_down(&fleet.catalog, Some(to), ctx.actor())
                .await?;
        }
        Step::RestoreBackup { backup, .. } => {
            restore_checked(ctx, session, backup, ctx.actor()).await?;
        }
        Step::Verify { version } => {
            let report = postgres::verify(
                session.connection(),
                name,
                &fleet.catalog,
                &ctx.client.config.database,
                Some(version),
            )
            .await?;
            if !report.passed() {
                return Err(StepError::Verify(
                    report
                        .failures()
                        .iter()
                        .map(|c| format!("{}: {}", c.name, c.detail))
                        .collect::<Vec<_>>()
                        .join("; "),
                ));
            }
        }
        Step::SetEnv { .. }
        | Step::Deploy { .. }
        | Step::WaitReady
        | Step::HealthCheck { .. }
        | Step::Promote { .. }
        | Step::Bake { .. }
        | Step::Rebake { .. }
        | Step::Record => unreachable!("{} is not a database step", step.kind()),
    }
    Ok(())
}

pub async fn undo(
    ctx: &Ctx<'_>,
    session: &mut Session,
    action: &Undo,
    scratch: &Scratch,
) -> Result<(), StepError> {
    let catalog = &ctx.fleet.catalog;
    match action {
        Undo::MigrateDownTo { version } => {
            match session
                .migrate_down(catalog, version.as_ref(), ctx.actor())
                .await
            {
                Ok(_) => Ok(()),
                // An irreversible migration: the backup taken by this run puts it back.
                Err(err) if err.is_refusal() && scratch.backup.is_some() => {
                    let backup = scratch.backup.as_deref().unwrap_or_default();
                    restore_checked(ctx, session, backup, ctx.actor())
                        .await
                        .map_err(|e| StepError::Undo(format!("{err}; restore failed too: {e}")))
                }
                Err(err) => Err(err.into()),
            }
        }
        Undo::MigrateUpTo { version } => {
            session.migrate_up(catalog, version, ctx.actor()).await?;
            Ok(())
        }
        Undo::RestoreTakenBackup => match &scratch.backup {
            Some(backup) => restore_checked(ctx, session, backup, ctx.actor()).await,
            None => Err(StepError::Undo(
                "no backup was taken before the restore; nothing to put back".to_owned(),
            )),
        },
        Undo::Nothing | Undo::RestoreEnv | Undo::PromotePrevious { .. } => {
            unreachable!("not a database undo")
        }
    }
}

/// `Session::restore` of a backup this client owns: its sidecar and checksum are checked
/// before the archive is read; the records survive inside the restore (see `backup::restore`).
async fn restore_checked(
    ctx: &Ctx<'_>,
    session: &mut Session,
    backup: &str,
    actor: Actor<'_>,
) -> Result<(), StepError> {
    let name = ctx.name();
    let fleet = ctx.fleet;
    let (info, file) = postgres::backup::find(name, &fleet.backups_dir, backup)?;
    postgres::backup::check(name, &fleet.backups_dir, &info, &file).await?;
    session
        .restore(
            &ctx.prepared.database_url,
            &file,
            ctx.client.config.database.identity,
            &fleet.catalog,
            actor,
        )
        .await?;
    Ok(())
}
