//! `steward emulate vercel|github`: run an emulator until Ctrl-C.

use anyhow::{Result, bail};

use crate::cli::{EmulateArgs, EmulatedApi};
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
        EmulatedApi::Github(_) => bail!("the GitHub emulator is not available in this build"),
    }
}
