//! All user-facing output goes through one [`Printer`]; diagnostics for operators go
//! through `tracing`. Keeping the two apart means `--format json` stays parseable and
//! logs never mix into a plan that CI posts as a PR comment.

pub mod table;

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

/// Install the tracing subscriber: logs go to stderr, filtered by `RUST_LOG`
/// (default `warn`), as text or JSON lines.
pub fn init_logging(global: &GlobalArgs) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    // A second init (tests calling commands in-process) is harmless: keep the first.
    let _ = match global.log_format {
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// `RUST_LOG` (default `warn`), with the server's notices that sqlx logs as warnings
/// (`there is no transaction in progress`) kept out unless `RUST_LOG` names sqlx itself:
/// steward reports what went wrong in its own words, and a stray driver line in the
/// middle of a plan says nothing an operator can act on.
fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let spec = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or("warn");
    let filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("warn"));
    if spec.contains("sqlx") {
        return filter;
    }
    match "sqlx::postgres::notice=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Writes what a person or a script asked for to stdout, and notes to stderr.
#[derive(Debug)]
pub struct Printer {
    color: bool,
}

impl Default for Printer {
    fn default() -> Self {
        Self::new()
    }
}

impl Printer {
    pub fn new() -> Self {
        let color = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Self { color }
    }

    /// A printer that never colours, for output captured into files or comments.
    pub fn plain() -> Self {
        Self { color: false }
    }

    pub fn color(&self) -> bool {
        self.color
    }

    /// One block of primary output (a plan, a table, JSON).
    pub fn out(&self, text: impl AsRef<str>) {
        let mut stdout = io::stdout().lock();
        // A closed pipe (`steward plan | head`) is not an error worth a panic.
        let _ = stdout.write_all(text.as_ref().as_bytes());
        if !text.as_ref().ends_with('\n') {
            let _ = stdout.write_all(b"\n");
        }
        let _ = stdout.flush();
    }

    /// A progress or status note for the person at the terminal; never part of the data.
    pub fn note(&self, text: impl AsRef<str>) {
        let _ = writeln!(io::stderr().lock(), "{}", text.as_ref());
    }

    /// An error line, prefixed so it stands out in CI logs.
    pub fn error(&self, text: impl AsRef<str>) {
        let prefix = self.paint("error", Style::Red);
        let _ = writeln!(io::stderr().lock(), "{prefix}: {}", text.as_ref());
    }

    pub fn warn(&self, text: impl AsRef<str>) {
        let prefix = self.paint("warning", Style::Yellow);
        let _ = writeln!(io::stderr().lock(), "{prefix}: {}", text.as_ref());
    }

    /// Wrap `text` in an ANSI style when colour is on.
    pub fn paint(&self, text: &str, style: Style) -> String {
        paint(self.color, text, style)
    }
}

/// The few styles steward uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Red,
    Green,
    Yellow,
    Bold,
    Dim,
}

pub fn paint(color: bool, text: &str, style: Style) -> String {
    if !color {
        return text.to_owned();
    }
    let code = match style {
        Style::Red => "31",
        Style::Green => "32",
        Style::Yellow => "33",
        Style::Bold => "1",
        Style::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}
