//! Steps on the client's database: preflight, backup, migrate up and down, restore (by
//! policy or by hand), repair, verify, and their undos. All run on the session that holds the client's lock.

use super::{Ctx, Scratch, StepError};
use crate::migrations::Version;
use crate::plan::{Step, Undo};
use crate::postgres::{self, Actor, Session, Status};

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
            let started = std::time::Instant::now();
            let info = postgres::backup::take(
                name,
                ctx.database_url,
                &fleet.backups_dir,
                version.as_ref(),
            )
            .await?;
            scratch.said.push(format!(
                "backup {} at schema {} ({} in {}, sha256 {}), checked readable: {}",
                info.id,
                info.schema_version.as_deref().unwrap_or("(empty)"),
                crate::progress::bytes(info.size),
                crate::progress::duration(started.elapsed()),
                &info.sha256[..16],
                fleet.backups_dir.join(name).join(&info.file).display()
            ));
            scratch.backup = Some(info.id);
        }
        Step::MigrateUp { to, .. } => {
            let report = session.migrate_up(&fleet.catalog, to, ctx.actor()).await?;
            scratch.said.push(migrated("applied", &report, to));
        }
        Step::MigrateDown { to, .. } => {
            let report = session
                .migrate_down(&fleet.catalog, Some(to), ctx.actor())
                .await?;
            scratch.said.push(migrated("rolled back", &report, to));
        }
        Step::RestoreBackup { backup, .. } => {
            restore_checked(ctx, session, backup, ctx.actor()).await?;
        }
        Step::Restore { backup, .. } => {
            let undone = restore_checked(ctx, session, backup, ctx.actor()).await?;
            let current = session.current_version().await?;
            scratch.undone = undone.iter().map(ToString::to_string).collect();
            let mut said = format!(
                "restored backup {backup}; schema now {}; identity re-checked",
                current.map_or("(empty)".to_owned(), |v| v.to_string())
            );
            if !undone.is_empty() {
                said.push_str(&format!(
                    "; marked rolled_back: {}",
                    scratch.undone.join(", ")
                ));
            }
            scratch.said.push(said);
        }
        Step::Repair { version, was, mark } => {
            let status = if mark == Status::Applied.as_str() {
                Status::Applied
            } else {
                Status::RolledBack
            };
            session
                .repair(&fleet.catalog, version, status, ctx.actor())
                .await?;
            scratch.said.push(format!(
                "{version} was `{was}`, now recorded `{mark}` by {}",
                ctx.runner.actor
            ));
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
            scratch.said.push(format!(
                "verified schema {version}: verify files, checks, RLS"
            ));
        }
        Step::SetEnv { .. }
        | Step::Deploy { .. }
        | Step::WaitReady
        | Step::HealthCheck { .. }
        | Step::Promote { .. }
        | Step::Bake { .. }
        | Step::Rebake { .. }
        | Step::Pause { .. }
        | Step::Unpause { .. }
        | Step::CodeRollback { .. }
        | Step::ClearFailure { .. }
        | Step::Rollout { .. }
        | Step::TakeOverPromotion { .. }
        | Step::Adopt
        | Step::Baseline { .. }
        | Step::SchemaReference { .. }
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
                        .map(drop)
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
            Some(backup) => restore_checked(ctx, session, backup, ctx.actor())
                .await
                .map(drop),
            None => Err(StepError::Undo(
                "no backup was taken before the restore; nothing to put back".to_owned(),
            )),
        },
        Undo::Nothing
        | Undo::RestoreEnv
        | Undo::PromotePrevious { .. }
        | Undo::Pause
        | Undo::Unpause
        | Undo::AbortRollout { .. }
        | Undo::RestoreAutoPromotion
        | Undo::ForgetIdentity => unreachable!("not a database undo"),
    }
}

/// `Session::restore` of a backup this client owns: its sidecar and checksum are checked
/// before the archive is read; the records survive inside the restore (see `backup::restore`).
/// Returns the versions the restore marked `rolled_back`.
async fn restore_checked(
    ctx: &Ctx<'_>,
    session: &mut Session,
    backup: &str,
    actor: Actor<'_>,
) -> Result<Vec<Version>, StepError> {
    let name = ctx.name();
    let fleet = ctx.fleet;
    let (info, file) = postgres::backup::find(name, &fleet.backups_dir, backup)?;
    postgres::backup::check(name, &fleet.backups_dir, &info, &file).await?;
    Ok(session
        .restore(
            ctx.database_url,
            &file,
            ctx.client.config.database.identity,
            &fleet.catalog,
            actor,
        )
        .await?)
}

fn migrated(what: &str, report: &postgres::MigrateReport, to: &Version) -> String {
    format!(
        "{what} {} migration(s) in {} ms: {}; schema now {to}",
        report.versions.len(),
        report.elapsed.as_millis(),
        crate::migrations::summarize(&report.versions)
    )
}

/// The guard of a restore by hand: the backup is still this client's and unchanged (the
/// archive's identity is checked again inside the restore, on the locked session).
pub async fn check_backup(ctx: &Ctx<'_>, backup: &str) -> Result<(), StepError> {
    let name = ctx.name();
    let fleet = ctx.fleet;
    let (info, file) = postgres::backup::find(name, &fleet.backups_dir, backup)?;
    postgres::backup::check(name, &fleet.backups_dir, &info, &file).await?;
    Ok(())
}
