//! Schema drift, as data: a normalized description of a schema (what `steward` records
//! after each run that changes it) and the readable difference between two of them.
//! Pure: the description is read elsewhere (`postgres::drift`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One object of a schema: its kind (`table`, `column`, `index`, `rls`…), its name
/// (`invoices.discount`, schema-qualified outside `public`) and its definition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SchemaItem(pub String, pub String, pub String);

impl SchemaItem {
    pub fn kind(&self) -> &str {
        &self.0
    }
    pub fn name(&self) -> &str {
        &self.1
    }
    pub fn definition(&self) -> &str {
        &self.2
    }
}

/// A whole schema, sorted by kind and name (the order the catalog query returns).
pub type SchemaDescription = Vec<SchemaItem>;

/// How one object differs from the reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Difference {
    Added,
    Dropped,
    Changed { from: String, to: String },
}

/// One readable line of drift: "column invoices.discount added".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaChange {
    pub kind: String,
    pub name: String,
    #[serde(flatten)]
    pub difference: Difference,
}

/// Definitions longer than this are summarized as "changed" instead of printed.
const SHOWN_DEFINITION: usize = 80;

impl fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = (&self.kind, &self.name);
        match &self.difference {
            Difference::Changed { to, .. } if kind == "rls" => {
                let state = if to.starts_with("enabled") {
                    "enabled"
                } else {
                    "disabled"
                };
                let forced = if to.ends_with("forced") {
                    " (forced)"
                } else {
                    ""
                };
                write!(f, "RLS {state}{forced} on {name}")
            }
            Difference::Added => write!(f, "{kind} {name} added"),
            Difference::Dropped => write!(f, "{kind} {name} dropped"),
            Difference::Changed { from, to }
                if from.len() <= SHOWN_DEFINITION && to.len() <= SHOWN_DEFINITION =>
            {
                write!(f, "{kind} {name} changed: {from} → {to}")
            }
            Difference::Changed { .. } => write!(f, "{kind} {name} changed"),
        }
    }
}

/// What differs in `live` from `reference`, sorted. The parts of a table that was added
/// or dropped as a whole (its columns, constraints, policies, triggers, RLS flag) are
/// folded into that one line.
pub fn diff(reference: &[SchemaItem], live: &[SchemaItem]) -> Vec<SchemaChange> {
    let index = |items: &[SchemaItem]| -> BTreeMap<(String, String), String> {
        items
            .iter()
            .map(|i| ((i.0.clone(), i.1.clone()), i.2.clone()))
            .collect()
    };
    let (old, new) = (index(reference), index(live));
    let mut changes = Vec::new();
    for ((kind, name), from) in &old {
        match new.get(&(kind.clone(), name.clone())) {
            None => changes.push(change(kind, name, Difference::Dropped)),
            Some(to) if to != from => changes.push(change(
                kind,
                name,
                Difference::Changed {
                    from: from.clone(),
                    to: to.clone(),
                },
            )),
            Some(_) => {}
        }
    }
    for (kind, name) in new.keys() {
        if !old.contains_key(&(kind.clone(), name.clone())) {
            changes.push(change(kind, name, Difference::Added));
        }
    }
    let whole_tables: BTreeSet<String> = changes
        .iter()
        .filter(|c| c.kind == "table")
        .filter(|c| matches!(c.difference, Difference::Added | Difference::Dropped))
        .map(|c| c.name.clone())
        .collect();
    changes.retain(|c| !is_part_of(c, &whole_tables));
    changes.sort_by(|a, b| (&a.name, &a.kind).cmp(&(&b.name, &b.kind)));
    changes
}

fn change(kind: &str, name: &str, difference: Difference) -> SchemaChange {
    SchemaChange {
        kind: kind.to_owned(),
        name: name.to_owned(),
        difference,
    }
}

/// A column, constraint, policy, trigger or RLS flag of a table in `tables`.
fn is_part_of(change: &SchemaChange, tables: &BTreeSet<String>) -> bool {
    match change.kind.as_str() {
        "rls" => tables.contains(&change.name),
        "column" | "constraint" | "policy" | "trigger" => change
            .name
            .rsplit_once('.')
            .is_some_and(|(table, _)| tables.contains(table)),
        _ => false,
    }
}

/// The live schema differs from the one recorded after the last run that changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The schema version the reference was recorded at.
    pub recorded_version: Option<String>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    pub changes: Vec<SchemaChange>,
}

/// The changes to show, from an observation.
pub fn changes(drift: Option<&Drift>) -> Vec<SchemaChange> {
    drift.map(|d| d.changes.clone()).unwrap_or_default()
}

/// The clients at one schema version, compared with each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionGroup {
    pub version: Option<String>,
    /// The clients sharing the most common schema at this version.
    pub alike: Vec<String>,
    /// Whether `alike` really is a majority (a tie picks the alphabetically first group).
    pub majority: bool,
    /// Clients whose schema differs from `alike`'s, each with how.
    pub outliers: Vec<Outlier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outlier {
    pub clients: Vec<String>,
    pub changes: Vec<SchemaChange>,
}

/// Group clients by schema version and, within each version, name the clients whose
/// schema differs from the most common one, and how. `looks` is (client, version,
/// schema).
pub fn compare_fleet(looks: Vec<(String, Option<String>, SchemaDescription)>) -> Vec<VersionGroup> {
    let mut by_version: BTreeMap<Option<String>, Vec<(String, SchemaDescription)>> =
        BTreeMap::new();
    for (client, version, schema) in looks {
        by_version
            .entry(version)
            .or_default()
            .push((client, schema));
    }
    by_version
        .into_iter()
        .map(|(version, clients)| {
            let mut alike: BTreeMap<SchemaDescription, Vec<String>> = BTreeMap::new();
            for (client, schema) in clients {
                alike.entry(schema).or_default().push(client);
            }
            let mut groups: Vec<(SchemaDescription, Vec<String>)> = alike.into_iter().collect();
            for (_, names) in &mut groups {
                names.sort();
            }
            groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.1.cmp(&b.1)));
            let majority = groups.len() < 2 || groups[0].1.len() > groups[1].1.len();
            let mut groups = groups.into_iter();
            let (reference, alike) = groups.next().unwrap_or_default();
            let outliers = groups
                .map(|(schema, clients)| Outlier {
                    clients,
                    changes: diff(&reference, &schema),
                })
                .collect();
            VersionGroup {
                version,
                alike,
                majority,
                outliers,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: &str, name: &str, def: &str) -> SchemaItem {
        SchemaItem(kind.to_owned(), name.to_owned(), def.to_owned())
    }

    fn base() -> Vec<SchemaItem> {
        vec![
            item("column", "accounts.id", "integer not null"),
            item("column", "invoices.id", "integer not null"),
            item(
                "index",
                "members_email_idx",
                "CREATE INDEX members_email_idx ON public.members USING btree (email)",
            ),
            item("rls", "accounts", "enabled"),
            item("table", "accounts", ""),
            item("table", "invoices", ""),
        ]
    }

    fn lines(changes: &[SchemaChange]) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_one_client_of_three_that_differs_is_named_with_how() {
        let mut odd = base();
        odd.push(item("column", "invoices.discount", "numeric"));
        let at = Some("2024_01_01_001".to_owned());
        let groups = compare_fleet(vec![
            ("globex".to_owned(), at.clone(), base()),
            ("initech".to_owned(), at.clone(), odd),
            ("acme".to_owned(), at, base()),
        ]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].alike, ["acme", "globex"]);
        assert!(groups[0].majority);
        assert_eq!(groups[0].outliers.len(), 1);
        assert_eq!(groups[0].outliers[0].clients, ["initech"]);
        assert_eq!(
            lines(&groups[0].outliers[0].changes),
            ["column invoices.discount added"]
        );
    }

    #[test]
    fn clients_at_different_versions_are_not_compared() {
        let mut newer = base();
        newer.push(item("table", "payments", ""));
        let groups = compare_fleet(vec![
            ("acme".to_owned(), Some("2024_01_01_001".to_owned()), base()),
            (
                "globex".to_owned(),
                Some("2024_01_01_002".to_owned()),
                newer,
            ),
        ]);
        assert_eq!(groups.len(), 2);
        assert!(groups.iter().all(|g| g.outliers.is_empty()));
    }

    #[test]
    fn identical_schemas_have_no_drift() {
        assert!(diff(&base(), &base()).is_empty());
    }

    #[test]
    fn a_hand_made_change_reads_as_a_sentence() {
        let mut live = base();
        live.push(item("column", "invoices.discount", "numeric"));
        live.retain(|i| i.name() != "members_email_idx");
        live.iter_mut()
            .filter(|i| i.kind() == "rls")
            .for_each(|i| i.2 = "disabled".to_owned());
        assert_eq!(
            lines(&diff(&base(), &live)),
            [
                "RLS disabled on accounts",
                "column invoices.discount added",
                "index members_email_idx dropped",
            ]
        );
    }

    #[test]
    fn a_changed_column_type_shows_both_definitions() {
        let mut live = base();
        live[1].2 = "bigint not null".to_owned();
        assert_eq!(
            lines(&diff(&base(), &live)),
            ["column invoices.id changed: integer not null → bigint not null"]
        );
    }

    #[test]
    fn a_dropped_table_is_one_line_not_one_per_column() {
        let live: Vec<SchemaItem> = base()
            .into_iter()
            .filter(|i| !i.name().starts_with("accounts"))
            .collect();
        assert_eq!(lines(&diff(&base(), &live)), ["table accounts dropped"]);
    }
}
