//! What a migration means for the client's users, declared in its header for the
//! guide's update communication: `-- steward: downtime`, `-- steward: breaking` and
//! `-- steward: user-action <what users must do>`.

use serde::Serialize;

/// The impact of one migration, or of a whole change (see [`Impact::add`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Impact {
    /// The application is unavailable while it runs.
    pub downtime: bool,
    /// Something users or integrations rely on changes incompatibly.
    pub breaking: bool,
    /// What users must do, one entry per directive.
    pub user_action: Vec<String>,
}

impl Impact {
    /// Read the directives of the leading comment block, as `no-transaction` is read:
    /// a directive after the first statement is text, not a directive.
    pub fn parse(sql: &str) -> Impact {
        let mut impact = Impact::default();
        let header = sql
            .lines()
            .map(str::trim)
            .take_while(|line| line.is_empty() || line.starts_with("--"));
        for line in header {
            let body = line.trim_start_matches('-').trim();
            let Some(directive) = strip_prefix_ignore_case(body, "steward:") else {
                continue;
            };
            let directive = directive.trim();
            let (word, rest) = directive
                .split_once(char::is_whitespace)
                .unwrap_or((directive, ""));
            match word.to_ascii_lowercase().as_str() {
                "downtime" => impact.downtime = true,
                "breaking" => impact.breaking = true,
                "user-action" if !rest.trim().is_empty() => {
                    impact.user_action.push(rest.trim().to_owned());
                }
                _ => {}
            }
        }
        impact
    }

    /// Fold another migration's impact into this one.
    pub fn add(&mut self, other: &Impact) {
        self.downtime |= other.downtime;
        self.breaking |= other.breaking;
        for action in &other.user_action {
            if !self.user_action.contains(action) {
                self.user_action.push(action.clone());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.downtime && !self.breaking && self.user_action.is_empty()
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_directives_declare_downtime_breaking_changes_and_user_actions() {
        let sql = "-- Rename the orders table\n-- steward: downtime\n--steward: BREAKING\n-- steward: user-action Sign in again after the update\n\nALTER TABLE a RENAME TO b;\n-- steward: user-action not a directive after SQL\n";
        let impact = Impact::parse(sql);
        assert!(impact.downtime);
        assert!(impact.breaking);
        assert_eq!(impact.user_action, ["Sign in again after the update"]);
    }

    #[test]
    fn a_migration_without_directives_has_no_impact_and_no_transaction_is_not_one() {
        let impact =
            Impact::parse("-- steward: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);");
        assert!(impact.is_empty(), "{impact:?}");
    }
}
