//! `steward schema`: write the manifest JSON Schemas generated from the types.

use anyhow::{Context, Result};

use crate::cli::SchemaArgs;
use crate::exit::Exit;
use crate::manifest::schema::Kind;
use crate::output::Printer;

pub fn run(args: SchemaArgs, printer: &Printer) -> Result<Exit> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for kind in [Kind::Fleet, Kind::Client] {
        let path = args.out.join(kind.file_name());
        std::fs::write(&path, render(kind))
            .with_context(|| format!("cannot write {}", path.display()))?;
        printer.note(format!("wrote {}", path.display()));
    }
    Ok(Exit::Success)
}

/// The schema file's exact text, so a test can compare it with what is checked in.
pub fn render(kind: Kind) -> String {
    let mut text = serde_json::to_string_pretty(kind.schema()).unwrap_or_default();
    text.push('\n');
    text
}
