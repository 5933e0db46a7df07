//! The `steward` binary: parse the command line, run one command, map the outcome to an
//! exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use steward::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    steward::output::init_logging(&cli.global);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(steward::exit::Exit::Error as u8);
        }
    };
    let exit = runtime.block_on(steward::commands::run(cli));
    ExitCode::from(exit as u8)
}
