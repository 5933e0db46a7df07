//! One file per subcommand: parse arguments into settings, call the library, print.
//! `run` is the only entry point; it maps every outcome onto the exit-code convention.

pub mod schema;
mod validate;

use crate::cli::{Cli, Command};
use crate::exit::Exit;
use crate::output::Printer;

/// Run one command to completion and say how it ended.
pub async fn run(cli: Cli) -> Exit {
    let printer = Printer::new();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args, &printer),
        Command::Schema(args) => schema::run(args, &printer),
        other => Err(anyhow::anyhow!(
            "`steward {}` is not available in this build",
            command_name(&other)
        )),
    };
    match result {
        Ok(exit) => exit,
        Err(err) => {
            printer.error(format!("{err:#}"));
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

fn command_name(command: &Command) -> String {
    let debug = format!("{command:?}");
    debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_lowercase()
}
