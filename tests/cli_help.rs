//! The command line explains itself: every subcommand and every flag has help text.

use clap::CommandFactory;
use steward::cli::Cli;

/// Every argument of `command` and its subcommands that has no help, as `path --flag`.
fn without_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let builtin = matches!(arg.get_id().as_str(), "help" | "version");
        if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
            missing.push(format!("{path} {}", arg.get_id()));
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            missing.push(format!("{path} {} (the subcommand)", sub.get_name()));
        }
        without_help(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[test]
fn every_flag_and_subcommand_has_help_text() {
    let command = Cli::command();
    let mut missing = Vec::new();
    without_help(&command, "steward", &mut missing);
    assert!(
        missing.is_empty(),
        "arguments without help text (add a /// doc comment):\n{}",
        missing.join("\n")
    );
    let subcommands = command.get_subcommands().count();
    assert!(subcommands > 10, "the walk saw {subcommands} subcommands");
}

#[test]
fn the_command_line_definition_is_consistent() {
    Cli::command().debug_assert();
}
