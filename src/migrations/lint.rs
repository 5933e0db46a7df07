//! Linting migrations with a real SQL parser.
//!
//! steward uses `sqlparser` (pure Rust, Postgres dialect) rather than `pg_query` (which
//! embeds Postgres's own parser): it builds with no C toolchain or libclang, which keeps
//! CI and the container build simple. The price is coverage: a statement sqlparser cannot
//! read is reported as `unknown` — never assumed safe — so a person looks at it.
//!
//! Each file is split into statements first (see `split`), so every finding carries the
//! line its statement starts on. `.up.sql` files are what lint gates for destructive SQL:
//! a `.down.sql` undoes by design (dropping what the up created), and a downgrade is
//! judged by the planner. Transaction control is an error in either file, because steward
//! runs both inside its own transaction.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, ObjectType, Statement, TableConstraint,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::catalog::{Catalog, Migration, Script, has_no_transaction_directive};
use super::split::split;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    /// Cannot run correctly as written: refused before anything runs, whatever the policy.
    Error,
    /// Loses data or weakens security; blocked under `policy.destructive: deny`.
    Destructive,
    /// Takes a lock that blocks the app, or cannot run as written.
    Hazard,
    /// The parser could not read the statement: a person must look at it.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    pub line: usize,
    pub kind: FindingKind,
    pub rule: &'static str,
    pub message: String,
}

impl Finding {
    pub fn is_destructive(&self) -> bool {
        self.kind == FindingKind::Destructive
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FindingKind::Error => "error",
            FindingKind::Destructive => "destructive",
            FindingKind::Hazard => "hazard",
            FindingKind::Unknown => "unknown",
        };
        write!(
            f,
            "{}:{}: {kind}: {}: {}",
            self.file.display(),
            self.line,
            self.rule,
            self.message
        )
    }
}

/// Lint a migration's `.up.sql`.
pub fn lint(migration: &Migration) -> Vec<Finding> {
    lint_script(&migration.up, migration.no_transaction)
}

/// Lint a migration's `.down.sql` for destructive statements (what a downgrade loses).
pub fn lint_down(migration: &Migration) -> Vec<Finding> {
    migration
        .down
        .as_ref()
        .map(|down| lint_script(down, true))
        .unwrap_or_default()
}

/// Every `.up.sql` in a catalog, and the transaction control of every `.down.sql`.
pub fn lint_catalog(catalog: &Catalog) -> Vec<Finding> {
    catalog
        .migrations
        .iter()
        .flat_map(|m| {
            let down = m.down.as_ref().map(transaction_control).unwrap_or_default();
            lint(m).into_iter().chain(down)
        })
        .collect()
}

/// The transaction-control statements (`BEGIN`, `COMMIT`, `SAVEPOINT`, ...) of a script
/// steward runs inside its own transaction, that is one without the `no-transaction`
/// directive: each would end or split that transaction, so part of a run could commit
/// and the rest not. Empty for a no-transaction script, whose author controls its
/// transactions. Statements inside function bodies, `DO` blocks and strings are not
/// statements of the script, and are never reported.
pub fn transaction_control(script: &Script) -> Vec<Finding> {
    if has_no_transaction_directive(&script.sql) {
        return Vec::new();
    }
    split(&script.sql)
        .iter()
        .filter_map(|statement| {
            let command = transaction_command(&statement.sql)?;
            Some(Finding {
                file: script.path.clone(),
                line: statement.line,
                kind: FindingKind::Error,
                rule: "transaction-control",
                message: format!(
                    "{command} controls the transaction steward runs this migration in: what ran before it would stay committed if a later statement failed; remove it (steward already runs each migration in a transaction), or add `-- steward: no-transaction` on the first line to manage transactions yourself"
                ),
            })
        })
        .collect()
}

/// The transaction command a statement is, named as written in the docs (`ROLLBACK TO`),
/// from its leading keywords.
fn transaction_command(sql: &str) -> Option<&'static str> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .take(4)
        .map_while(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Some(match words.as_slice() {
        ["BEGIN", "ATOMIC", ..] => return None,
        ["BEGIN", ..] => "BEGIN",
        ["START", "TRANSACTION", ..] => "START TRANSACTION",
        ["COMMIT", "PREPARED", ..] => "COMMIT PREPARED",
        ["COMMIT", ..] => "COMMIT",
        ["END", ..] => "END",
        ["ROLLBACK", "PREPARED", ..] => "ROLLBACK PREPARED",
        ["ROLLBACK", "TO", ..] => "ROLLBACK TO",
        ["ROLLBACK", ..] => "ROLLBACK",
        ["ABORT", ..] => "ABORT",
        ["SAVEPOINT", ..] => "SAVEPOINT",
        ["RELEASE", ..] => "RELEASE",
        ["PREPARE", "TRANSACTION", ..] => "PREPARE TRANSACTION",
        ["SET", "TRANSACTION", ..] => "SET TRANSACTION",
        ["SET", "SESSION", "CHARACTERISTICS", ..] => "SET SESSION CHARACTERISTICS",
        _ => return None,
    })
}

fn lint_script(script: &Script, no_transaction: bool) -> Vec<Finding> {
    let mut out = if no_transaction {
        Vec::new()
    } else {
        transaction_control(script)
    };
    // Tables created earlier in the same file are new: indexing them locks nobody.
    let mut created: BTreeSet<String> = BTreeSet::new();
    for statement in split(&script.sql) {
        // Already reported as an error; the parser knows some of these forms, not all.
        if !no_transaction && transaction_command(&statement.sql).is_some() {
            continue;
        }
        let mut find = |kind, rule, message: String| {
            out.push(Finding {
                file: script.path.clone(),
                line: statement.line,
                kind,
                rule,
                message,
            });
        };
        let parsed = match Parser::parse_sql(&PostgreSqlDialect {}, &statement.sql) {
            Ok(parsed) => parsed,
            Err(err) => {
                find(
                    FindingKind::Unknown,
                    "unparsed",
                    format!("the SQL parser cannot read this statement ({err}); review it by hand"),
                );
                continue;
            }
        };
        for stmt in parsed {
            check(&stmt, &mut created, no_transaction, &mut find);
        }
    }
    out.sort_by_key(|f| f.line);
    out
}

fn base_name(name: &sqlparser::ast::ObjectName) -> String {
    name.to_string()
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .trim_matches('"')
        .to_lowercase()
}

fn check(
    stmt: &Statement,
    created: &mut BTreeSet<String>,
    no_transaction: bool,
    find: &mut impl FnMut(FindingKind, &'static str, String),
) {
    use FindingKind::{Destructive, Hazard};
    match stmt {
        Statement::CreateTable(table) => {
            created.insert(base_name(&table.name));
        }
        Statement::Drop {
            object_type, names, ..
        } => {
            let what = match object_type {
                ObjectType::Table => Some("drop-table"),
                ObjectType::Schema => Some("drop-schema"),
                _ => None,
            };
            if let Some(rule) = what {
                let list: Vec<String> = names.iter().map(ToString::to_string).collect();
                find(
                    Destructive,
                    rule,
                    format!("drops {} {} and its data", object_type, list.join(", ")),
                );
            }
        }
        Statement::Truncate { .. } => find(
            Destructive,
            "truncate",
            "TRUNCATE deletes every row".to_owned(),
        ),
        Statement::Delete(delete) if delete.selection.is_none() => {
            find(
                Destructive,
                "delete-without-where",
                "DELETE without WHERE deletes every row".to_owned(),
            );
        }
        Statement::Update {
            selection: None, ..
        } => {
            find(
                Destructive,
                "update-without-where",
                "UPDATE without WHERE rewrites every row".to_owned(),
            );
        }
        Statement::DropPolicy { name, .. } => {
            find(
                Destructive,
                "drop-policy",
                format!("DROP POLICY {name} removes a row-level security rule"),
            );
        }
        Statement::CreateIndex(index) => {
            let table = base_name(&index.table_name);
            if index.concurrently && !no_transaction {
                find(Hazard, "concurrently-in-transaction", "CREATE INDEX CONCURRENTLY cannot run in a transaction; add `-- steward: no-transaction` on the first line".to_owned());
            }
            if !index.concurrently && !created.contains(&table) {
                find(
                    Hazard,
                    "index-without-concurrently",
                    format!(
                        "CREATE INDEX on existing table {table} blocks writes while it builds; use CREATE INDEX CONCURRENTLY in a no-transaction migration"
                    ),
                );
            }
        }
        Statement::AlterTable {
            name, operations, ..
        } => {
            let table = base_name(name);
            for op in operations {
                match op {
                    AlterTableOperation::DropColumn { column_names, .. } => {
                        let cols: Vec<String> =
                            column_names.iter().map(ToString::to_string).collect();
                        find(
                            Destructive,
                            "drop-column",
                            format!("drops column {} of {table} and its data", cols.join(", ")),
                        );
                    }
                    AlterTableOperation::AlterColumn {
                        column_name,
                        op: AlterColumnOperation::SetDataType { .. },
                    } => {
                        find(
                            Destructive,
                            "alter-column-type",
                            format!(
                                "changing the type of {table}.{column_name} rewrites the table and may lose data"
                            ),
                        );
                    }
                    AlterTableOperation::DisableRowLevelSecurity => {
                        find(
                            Destructive,
                            "disable-rls",
                            format!(
                                "disables row-level security on {table}: every row becomes visible"
                            ),
                        );
                    }
                    AlterTableOperation::AddColumn { column_def, .. } => {
                        let not_null = column_def
                            .options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::NotNull));
                        let default = column_def
                            .options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::Default(_)));
                        if not_null && !default && !created.contains(&table) {
                            find(
                                Hazard,
                                "add-column-not-null-without-default",
                                format!(
                                    "adding NOT NULL column {} without a DEFAULT fails on a table with rows",
                                    column_def.name
                                ),
                            );
                        }
                    }
                    AlterTableOperation::AddConstraint {
                        constraint: TableConstraint::ForeignKey { .. },
                        not_valid: false,
                    } if !created.contains(&table) => {
                        find(
                            Hazard,
                            "foreign-key-without-not-valid",
                            format!(
                                "adding a foreign key to {table} scans it under a lock; add it NOT VALID, then VALIDATE CONSTRAINT in a later migration"
                            ),
                        );
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn run(sql: &str) -> Vec<Finding> {
        lint_script(
            &Script {
                path: PathBuf::from("m.up.sql"),
                sql: sql.to_owned(),
                checksum: String::new(),
            },
            false,
        )
    }

    fn rules(sql: &str) -> Vec<&'static str> {
        run(sql).into_iter().map(|f| f.rule).collect()
    }

    #[rstest]
    #[case("drop table accounts;", "drop-table")]
    #[case("drop schema app cascade;", "drop-schema")]
    #[case("alter table invoices drop column due_at;", "drop-column")]
    #[case("truncate invoices;", "truncate")]
    #[case(
        "alter table invoices alter column amount_cents type numeric;",
        "alter-column-type"
    )]
    #[case("delete from invoices;", "delete-without-where")]
    #[case("update invoices set status = 'void';", "update-without-where")]
    #[case("drop policy invoices_isolation on invoices;", "drop-policy")]
    #[case("alter table invoices disable row level security;", "disable-rls")]
    #[case("create index i on invoices (status);", "index-without-concurrently")]
    #[case(
        "alter table invoices add column region text not null;",
        "add-column-not-null-without-default"
    )]
    #[case(
        "alter table invoices add constraint fk foreign key (account_id) references accounts (id);",
        "foreign-key-without-not-valid"
    )]
    fn each_rule_flags_its_statement(#[case] sql: &str, #[case] rule: &str) {
        assert_eq!(rules(sql), vec![rule]);
    }

    #[rstest]
    #[case("delete from invoices where status = 'void';")]
    #[case("update invoices set status = 'void' where id = '1';")]
    #[case("create table t (a int);\ncreate index t_a on t (a);")]
    #[case("alter table invoices add column region text not null default 'eu';")]
    #[case(
        "alter table invoices add constraint fk foreign key (account_id) references accounts (id) not valid;"
    )]
    #[case("alter table invoices add column due_at timestamptz;")]
    fn safe_variants_are_not_flagged(#[case] sql: &str) {
        assert!(run(sql).is_empty(), "{:?}", run(sql));
    }

    #[rstest]
    #[case("begin;", "BEGIN")]
    #[case("BEGIN WORK;", "BEGIN")]
    #[case("start transaction isolation level serializable;", "START TRANSACTION")]
    #[case("commit;", "COMMIT")]
    #[case("commit and chain;", "COMMIT")]
    #[case("end transaction;", "END")]
    #[case("rollback;", "ROLLBACK")]
    #[case("abort;", "ABORT")]
    #[case("savepoint before_backfill;", "SAVEPOINT")]
    #[case("release savepoint before_backfill;", "RELEASE")]
    #[case("rollback to savepoint before_backfill;", "ROLLBACK TO")]
    #[case("prepare transaction 'm1';", "PREPARE TRANSACTION")]
    #[case("commit prepared 'm1';", "COMMIT PREPARED")]
    #[case("rollback prepared 'm1';", "ROLLBACK PREPARED")]
    #[case("set transaction isolation level serializable;", "SET TRANSACTION")]
    #[case(
        "set session characteristics as transaction read only;",
        "SET SESSION CHARACTERISTICS"
    )]
    fn transaction_control_in_a_transactional_migration_is_an_error(
        #[case] sql: &str,
        #[case] command: &str,
    ) {
        let findings = run(&format!("create table t (a int);\n-- why\n{sql}\n"));
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let finding = &findings[0];
        assert_eq!(
            (finding.kind, finding.rule, finding.line),
            (FindingKind::Error, "transaction-control", 3)
        );
        assert!(finding.message.starts_with(command), "{}", finding.message);
    }

    #[rstest]
    #[case::plpgsql_body(
        "create function f() returns void as $$ begin perform 1; commit; end $$ language plpgsql;"
    )]
    #[case::do_block("do $body$ begin rollback; end $body$;")]
    #[case::quoted_body("do 'begin commit; end';")]
    #[case::sql_standard_body(
        "create procedure p() language sql\nbegin atomic\n  insert into t values (1);\nend;"
    )]
    #[case::string("insert into notes values ('commit;');")]
    #[case::comment("-- commit;\n/* rollback; */ select 1;")]
    #[case::prepared_statement("prepare ins (int) as insert into t values ($1);")]
    #[case::other_settings("set local lock_timeout = '5s';")]
    fn transaction_words_that_are_not_statements_are_not_flagged(#[case] sql: &str) {
        let errors: Vec<Finding> = run(sql)
            .into_iter()
            .filter(|f| f.kind == FindingKind::Error)
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn a_no_transaction_migration_may_control_its_own_transactions() {
        let script = Script {
            path: PathBuf::from("m.up.sql"),
            sql: "-- steward: no-transaction\nbegin;\nselect 1;\ncommit;\n".to_owned(),
            checksum: String::new(),
        };
        assert!(transaction_control(&script).is_empty());
        assert!(lint_script(&script, true).is_empty());
    }

    #[test]
    fn a_down_file_with_commit_is_an_error_of_the_catalog() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("2024_01_01_001_a.up.sql"), "select 1;").expect("write");
        std::fs::write(
            dir.path().join("2024_01_01_001_a.down.sql"),
            "select 1;\ncommit;\n",
        )
        .expect("write");
        let catalog = Catalog::load(dir.path()).expect("catalog");
        let findings = lint_catalog(&catalog);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert!(findings[0].file.ends_with("2024_01_01_001_a.down.sql"));
        assert_eq!(
            (findings[0].kind, findings[0].line),
            (FindingKind::Error, 2)
        );
    }

    #[test]
    fn an_unreadable_statement_is_unknown_at_its_line_never_safe() {
        let findings = run("select 1;\n\ncreate frobnicate widget;\n");
        assert_eq!(findings.len(), 1);
        assert_eq!(
            (findings[0].kind, findings[0].line),
            (FindingKind::Unknown, 3)
        );
    }

    #[test]
    fn the_example_migrations_have_no_destructive_up_file() {
        let catalog = Catalog::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations"))
            .expect("catalog");
        let blocking: Vec<String> = lint_catalog(&catalog)
            .iter()
            .filter(|f| f.kind != FindingKind::Hazard)
            .map(ToString::to_string)
            .collect();
        assert!(blocking.is_empty(), "{blocking:#?}");
    }
}
