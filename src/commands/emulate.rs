//! `steward emulate vercel|github`: run an emulator until Ctrl-C.

use anyhow::Result;

use crate::cli::{EmulateArgs, EmulatedApi};
use crate::emulator::github;
use crate::emulator::vercel::{EmulatorConfig, RunningEmulator};
use crate::exit::Exit;
use crate::output::Printer;

pub async fn run(args: EmulateArgs, printer: &Printer) -> Result<Exit> {
    match args.api {
        EmulatedApi::Vercel(v) => {
            let config = EmulatorConfig {
                listen: v.listen.parse()?,
                token: v.token,
                build_time: v.build_time,
                projects: v.projects,
                state_file: v.state,
            };
            let emulator = RunningEmulator::start(config).await?;
            printer.note(format!("Vercel emulator listening on {} (deployment hosts *.vercel.app answer on the same port); Ctrl-C stops it", emulator.base_url));
            tokio::signal::ctrl_c().await?;
            emulator.shutdown();
            Ok(Exit::Success)
        }
        EmulatedApi::Github(g) => {
            let mut config = github::GithubEmulatorConfig::new(g.token);
            config.listen = g.listen.parse()?;
            let emulator = github::RunningEmulator::start(config).await?;
            printer.note(format!(
                "GitHub emulator listening on {} (also under /api/v3); Ctrl-C stops it",
                emulator.base_url
            ));
            tokio::signal::ctrl_c().await?;
            emulator.shutdown();
            Ok(Exit::Success)
        }
    }
}
