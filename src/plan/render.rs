//! Renderings of a set of plans: text for terminals, markdown for PR comments, JSON for
//! machines (a documented, stable shape: see `docs/plan-json.md`). Secrets never reach
//! any of them: plans only hold env keys and fingerprints.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Hold, Outcome, Plan, Step};
use crate::migrations::Catalog;
use crate::output::{Style, paint};

/// The plans of one run, plus clients that could not be planned.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub plans: Vec<Plan>,
    /// (client, error) for clients whose observation or config failed.
    pub errors: Vec<(String, String)>,
    pub revision: Option<String>,
    /// Run-wide notes (e.g. manifests deleted or renamed in a PR).
    pub notes: Vec<String>,
}

/// The whole run, as one word: what CI and the exit code branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Clean,
    Changes,
    Blocked,
    Invalid,
}

impl Report {
    pub fn outcome(&self) -> RunOutcome {
        if !self.errors.is_empty() {
            RunOutcome::Invalid
        } else if self.plans.iter().any(|p| p.outcome() == Outcome::Blocked) {
            RunOutcome::Blocked
        } else if self.plans.iter().any(|p| p.outcome() == Outcome::Changes) {
            RunOutcome::Changes
        } else {
            RunOutcome::Clean
        }
    }

    pub fn summary(&self) -> String {
        let count = |o: Outcome| self.plans.iter().filter(|p| p.outcome() == o).count();
        let mut parts = vec![
            format!("{} converged", count(Outcome::Converged)),
            format!("{} with changes", count(Outcome::Changes)),
        ];
        let blocked = count(Outcome::Blocked);
        if blocked > 0 {
            parts.push(format!("{blocked} blocked"));
        }
        let held = self
            .plans
            .iter()
            .filter(|p| !p.holds.is_empty() && !p.steps.is_empty())
            .count();
        if held > 0 {
            parts.push(format!("{held} holding"));
        }
        if !self.errors.is_empty() {
            parts.push(format!("{} failed to plan", self.errors.len()));
        }
        let n = self.plans.len() + self.errors.len();
        format!(
            "steward plan: {n} client{}: {}",
            if n == 1 { "" } else { "s" },
            parts.join(", ")
        )
    }
}

fn status_word(plan: &Plan) -> String {
    match plan.outcome() {
        Outcome::Converged => "converged".to_owned(),
        Outcome::Blocked => "blocked".to_owned(),
        Outcome::Changes if !plan.holds.is_empty() => "holding".to_owned(),
        Outcome::Changes => "changes".to_owned(),
    }
}

fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}

fn code_cell(plan: &Plan) -> String {
    match &plan.changes.code {
        None => "—".to_owned(),
        Some((from, to)) => {
            let to = match &plan.changes.tag {
                Some(tag) => format!("{tag} ({})", short(to)),
                None => short(to),
            };
            format!(
                "{} → {to}",
                from.as_deref().map_or("(none)".to_owned(), short)
            )
        }
    }
}

fn schema_cell(plan: &Plan) -> String {
    match &plan.changes.schema {
        None => "—".to_owned(),
        Some((from, to)) => format!(
            "{} → {to}",
            from.as_ref()
                .map_or("(none)".to_owned(), ToString::to_string)
        ),
    }
}

fn env_cell(plan: &Plan) -> String {
    if plan.changes.env.is_empty() {
        return "—".to_owned();
    }
    let count = |a| plan.changes.env.iter().filter(|c| c.action == a).count();
    use super::EnvAction::*;
    let mut parts = Vec::new();
    for (n, what) in [
        (count(Add), "added"),
        (count(Change), "changed"),
        (count(Remove), "removed"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(", ")
}

/// For terminals.
pub fn text(report: &Report, color: bool) -> String {
    let mut out = String::new();
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if !report.notes.is_empty() {
        out.push('\n');
    }
    for plan in &report.plans {
        let word = status_word(plan);
        let style = match plan.outcome() {
            Outcome::Converged => Style::Green,
            Outcome::Blocked => Style::Red,
            Outcome::Changes => Style::Yellow,
        };
        let _ = writeln!(
            out,
            "{} {} (plan {})",
            paint(color, &plan.client, Style::Bold),
            paint(color, &word, style),
            plan.hash
        );
        if plan.steps.is_empty() {
            let _ = writeln!(out, "  nothing to do");
        }
        let _ = writeln!(out, "  code:   {}", code_cell(plan));
        let _ = writeln!(out, "  schema: {}", schema_cell(plan));
        for change in &plan.changes.env {
            let _ = writeln!(out, "  env:    {change}");
        }
        for (i, step) in plan.steps.iter().enumerate() {
            let _ = writeln!(out, "  {:>2}. {step}", i + 1);
        }
        if let Some(rehearsal) = &plan.rehearsal {
            let _ = writeln!(out, "  {}", rehearsal.headline());
            for m in &rehearsal.migrations {
                let _ = writeln!(out, "      {m}");
            }
        }
        for change in &plan.drift {
            let _ = writeln!(out, "  drift: {change}");
        }
        for hold in &plan.holds {
            let _ = writeln!(out, "  {} {hold}", paint(color, "hold:", Style::Yellow));
        }
        for block in &plan.blocks {
            let _ = writeln!(out, "  {} {block}", paint(color, "blocked:", Style::Red));
        }
        for line in &plan.lint {
            let _ = writeln!(out, "  lint: {line}");
        }
        for note in &plan.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out.push('\n');
    }
    for (client, error) in &report.errors {
        let _ = writeln!(
            out,
            "{} {}: {error}\n",
            paint(color, client, Style::Bold),
            paint(color, "error", Style::Red)
        );
    }
    out.push_str(&report.summary());
    out.push('\n');
    out
}

/// The hidden marker that lets `steward comment` find its own sticky comment.
pub const COMMENT_MARKER: &str = "<!-- steward:plan -->";

/// For PR comments: a summary table, then collapsible details per client. Every piece
/// of text that steward did not write itself goes through [`super::markdown`].
pub fn markdown(report: &Report, catalog: Option<&Catalog>) -> String {
    use super::markdown as md;
    let mut out = String::new();
    let _ = writeln!(out, "{COMMENT_MARKER}\n### steward plan\n");
    let _ = writeln!(out, "{}\n", md::text(&report.summary()));
    if let Some(rev) = &report.revision {
        let _ = writeln!(out, "Fleet revision {}\n", md::code(&short(rev)));
    }
    for note in &report.notes {
        let _ = writeln!(out, "> {}\n", md::text(note));
    }
    let _ = writeln!(out, "| Client | Status | Code | Schema | Env | Holds |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for plan in &report.plans {
        let reasons: Vec<String> = plan
            .holds
            .iter()
            .map(|h| md::text(&h.to_string()))
            .chain(
                plan.blocks
                    .iter()
                    .map(|b| format!("⛔ {}", md::text(&b.to_string()))),
            )
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            md::code_cell(&plan.client),
            status_word(plan),
            md::text(&code_cell(plan)),
            md::text(&schema_cell(plan)),
            env_cell(plan),
            if reasons.is_empty() {
                "—".to_owned()
            } else {
                reasons.join("<br>")
            }
        );
    }
    for (client, error) in &report.errors {
        let _ = writeln!(
            out,
            "| {} | error | | | | {} |",
            md::code_cell(client),
            md::code_cell(error)
        );
    }
    for plan in report
        .plans
        .iter()
        .filter(|p| !p.steps.is_empty() || !p.blocks.is_empty())
    {
        let _ = writeln!(
            out,
            "\n<details><summary><code>{}</code>: {} (plan <code>{}</code>)</summary>\n",
            md::html(&plan.client),
            status_word(plan),
            md::html(&plan.hash)
        );
        for (i, step) in plan.steps.iter().enumerate() {
            let _ = writeln!(out, "{}. {}", i + 1, md::text(&step.to_string()));
        }
        // Holds again, each with the command that releases it as a code span a reviewer
        // can copy (the table cell above escapes it to plain text).
        for hold in &plan.holds {
            let _ = write!(out, "\n**Held**: {}", md::text(&hold.to_string()));
            if let Some(command) = hold.command() {
                let _ = write!(out, " — {}", md::code(&command));
            }
            out.push('\n');
        }
        for change in &plan.changes.env {
            let _ = writeln!(
                out,
                "\n- env {}: {}",
                md::code(&change.key),
                md::text(&change.to_string())
            );
        }
        if let Some(rehearsal) = &plan.rehearsal {
            rehearsal_markdown(&mut out, rehearsal);
        }
        if !plan.drift.is_empty() {
            let _ = writeln!(out, "\n**Schema drift** (changed outside steward)\n");
            for change in &plan.drift {
                let _ = writeln!(out, "- {}", super::markdown::text(&change.to_string()));
            }
        }
        if !plan.lint.is_empty() {
            let _ = writeln!(out, "\n**Lint**\n");
            for line in &plan.lint {
                let _ = writeln!(out, "- {}", md::code(line));
            }
        }
        for note in &plan.notes {
            let _ = writeln!(out, "\n> {}", md::text(note));
        }
        if let Some(catalog) = catalog {
            for (name, sql) in migration_scripts(plan, catalog) {
                let _ = writeln!(out, "\n{}\n\n{}", md::code(&name), md::fence(sql, "sql"));
            }
        }
        let _ = writeln!(out, "\n</details>");
    }
    out
}

fn rehearsal_markdown(out: &mut String, rehearsal: &super::Rehearsal) {
    let _ = writeln!(
        out,
        "\n**Rehearsal**: {}\n",
        super::markdown::text(&rehearsal.headline())
    );
    if !rehearsal.migrations.is_empty() {
        let _ = writeln!(
            out,
            "| Migration | Duration | Strongest lock | Held | Rows |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for m in &rehearsal.migrations {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                super::markdown::code_cell(&m.version.to_string()),
                super::millis(m.duration_ms),
                super::markdown::text(&m.lock_text()),
                m.held_text(),
                m.rows
            );
        }
    }
    if let Some(failure) = &rehearsal.failure {
        let _ = writeln!(out, "\n⛔ {}", super::markdown::text(&failure.to_string()));
    }
}

/// The SQL a plan will run, by file name, in order.
fn migration_scripts<'a>(plan: &Plan, catalog: &'a Catalog) -> Vec<(String, &'a str)> {
    let mut scripts = Vec::new();
    for step in &plan.steps {
        let (versions, down) = match step {
            Step::MigrateUp { versions, .. } => (versions, false),
            Step::MigrateDown { versions, .. } => (versions, true),
            _ => continue,
        };
        for m in versions.iter().filter_map(|v| catalog.get(v)) {
            let script = if down { m.down.as_ref() } else { Some(&m.up) };
            if let Some(script) = script {
                let name = script
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                scripts.push((name, script.sql.as_str()));
            }
        }
    }
    scripts
}

/// Machine-readable: `docs/plan-json.md` documents the shape; `version` bumps on change.
pub fn json(report: &Report, catalog: Option<&Catalog>) -> Value {
    let clients: Vec<Value> = report
        .plans
        .iter()
        .map(|plan| {
            json!({
                "client": plan.client,
                "command": plan.command,
                "outcome": plan.outcome(),
                "status": status_word(plan),
                "hash": plan.hash,
                "release": plan.release,
                "runnable": plan.runnable(),
                "changes": plan.changes,
                "steps": plan.steps.iter().map(|s| json!({
                    "step": s,
                    "description": s.to_string(),
                    "guard": s.guard(),
                    "undo": s.undo(),
                })).collect::<Vec<_>>(),
                "holds": plan.holds.iter().map(hold_json).collect::<Vec<_>>(),
                "blocks": plan.blocks.iter().map(|b| json!({"block": b, "reason": b.to_string()})).collect::<Vec<_>>(),
                "lint": plan.lint,
                "notes": plan.notes,
                "rehearsal": plan.rehearsal,
                "drift": plan.drift.iter().map(|c| json!({"change": c, "description": c.to_string()})).collect::<Vec<_>>(),
                "outside_change": plan.outside_change.as_ref().map(|c| json!({"change": c, "description": c.to_string()})),
            })
        })
        .collect();
    json!({
        "version": 1,
        "outcome": report.outcome(),
        "summary": report.summary(),
        "revision": report.revision,
        "clients": clients,
        "errors": report.errors.iter().map(|(c, e)| json!({"client": c, "error": e})).collect::<Vec<_>>(),
        "notes": report.notes,
        "markdown": markdown(report, catalog),
    })
}

fn hold_json(hold: &Hold) -> Value {
    json!({"hold": hold, "reason": hold.to_string(), "command": hold.command()})
}
