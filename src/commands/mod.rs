//! One file per subcommand: parse arguments into settings, call the library, print.
//! `run` is the only entry point; it maps every outcome onto the exit-code convention.

mod adopt;
mod apply;
mod backup;
mod change;
mod comment;
mod demo;
mod drift;
mod emulate;
mod history;
mod lint;
mod migrate;
mod pause;
mod plan;
mod preflight;
mod repair;
mod restore;
mod retry;
mod rollback;
mod run;
pub mod schema;
mod status;
mod support;
mod validate;
mod verify;

use crate::cli::{Cli, Command};
use crate::exit::Exit;
use crate::output::Printer;

/// Run one command to completion and say how it ended.
pub async fn run(cli: Cli) -> Exit {
    let printer = Printer::new();
    crate::vercel::set_default_budget(crate::vercel::Budget {
        attempts: cli.global.vercel_max_attempts,
        max_wait: cli.global.vercel_max_wait,
    });
    let result = match cli.command {
        Command::Validate(args) => validate::run(args, &printer),
        Command::Schema(args) => schema::run(args, &printer),
        Command::Lint(args) => lint::run(args, &printer),
        Command::Adopt(args) => adopt::run(args, &printer).await,
        Command::Preflight(args) => preflight::run(args, &printer).await,
        Command::Backup(args) => backup::take(args, &printer).await,
        Command::Backups(args) => backup::list(args, &printer).await,
        Command::Restore(args) => restore::run(args, &printer).await,
        Command::Migrate(args) => migrate::run(args, &printer).await,
        Command::Verify(args) => verify::run(args, &printer).await,
        Command::Repair(args) => repair::run(args, &printer).await,
        Command::Plan(args) => plan::run(args, &printer).await,
        Command::Apply(args) => apply::run(args, &printer).await,
        Command::Status(args) => status::run(args, &printer).await,
        Command::History(args) => history::run(args, &printer).await,
        Command::Retry(args) => retry::run(args, &printer).await,
        Command::Rollback(args) => rollback::run(args, &printer).await,
        Command::Pause(args) => pause::run(args, true, &printer).await,
        Command::Unpause(args) => pause::run(args, false, &printer).await,
        Command::Emulate(args) => emulate::run(args, &printer).await,
        Command::Comment(args) => comment::run(args, &printer).await,
        Command::Run(args) => run::run(args, &printer).await,
        Command::Demo(args) => demo::run(args, &printer).await,
        Command::Drift(args) => drift::run(args, &printer).await,
    };
    match result {
        Ok(exit) => exit,
        Err(err) => {
            printer.error(describe(&err));
            exit_for(&err)
        }
    }
}

/// A refusal by a guard exits 3; everything else that went wrong exits 1.
fn exit_for(err: &anyhow::Error) -> Exit {
    if err.chain().any(|cause| cause.is::<crate::exit::Refused>()) {
        Exit::Refused
    } else {
        Exit::Error
    }
}

/// The error and its causes, each said once: many errors already include their source
/// in their own text (`Vercel 404 not_found: …`), and `{:#}` would repeat it.
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[derive(Debug, thiserror::Error)]
    #[error("client shop: Vercel: {source}")]
    struct Wrapped {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let err = anyhow::Error::new(Wrapped {
            source: std::io::Error::other("Vercel 404 not_found: no such project"),
        })
        .context("cannot plan");
        assert_eq!(
            describe(&err),
            "cannot plan: client shop: Vercel: Vercel 404 not_found: no such project"
        );
    }
}
