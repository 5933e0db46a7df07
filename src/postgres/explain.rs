//! Database errors in words a person can act on. sqlx's own texts name Rust types
//! ("Rust type `core::option::Option<bool>` … is not compatible with SQL type `INT4`");
//! every database error steward shows goes through [`explain`] instead.

use sqlx::postgres::PgDatabaseError;

/// What went wrong, in words, with Postgres's detail and hint when it gave them.
pub fn explain(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<PgDatabaseError>() {
            Some(pg) => {
                let mut text = pg.message().to_owned();
                if let Some(detail) = pg.detail() {
                    text.push_str(&format!(" ({detail})"));
                }
                if let Some(hint) = pg.hint() {
                    text.push_str(&format!("; hint: {hint}"));
                }
                text
            }
            None => db.message().to_owned(),
        },
        sqlx::Error::ColumnDecode { index, source } => {
            match mismatched_types(&source.to_string()) {
                Some((expected, found)) => format!(
                    "the query's column {index} is {found}, where {expected} is expected; change the query to return {expected}"
                ),
                None => format!("the query's column {index} could not be read: {source}"),
            }
        }
        sqlx::Error::Decode(source) => match mismatched_types(&source.to_string()) {
            Some((expected, found)) => format!(
                "the query returned {found}, where {expected} is expected; change the query to return {expected}"
            ),
            None => format!("a value could not be read: {source}"),
        },
        sqlx::Error::RowNotFound => {
            "the query returned no row; it must return exactly one".to_owned()
        }
        sqlx::Error::ColumnNotFound(name) => format!("the query returned no column `{name}`"),
        sqlx::Error::Io(io) => {
            format!("the connection to the database broke ({io}); check the network and try again")
        }
        sqlx::Error::Tls(tls) => format!("TLS with the database failed: {tls}"),
        sqlx::Error::PoolTimedOut => {
            "timed out waiting for a database connection; try again".to_owned()
        }
        sqlx::Error::Protocol(text) => {
            format!("the database answered something unexpected: {text}")
        }
        sqlx::Error::Configuration(source) => {
            format!("the database URL or its options are not usable: {source}")
        }
        other => other.to_string(),
    }
}

/// sqlx's "mismatched types; Rust type `…` (as SQL type `EXPECTED`) is not compatible
/// with SQL type `FOUND`", as (expected, found) in SQL words.
fn mismatched_types(text: &str) -> Option<(String, String)> {
    let expected = between(text, "(as SQL type `", "`)")?;
    let found = between(text, "compatible with SQL type `", "`")?;
    Some((sql_words(expected), sql_words(found)))
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// A Postgres type name as a person says it.
fn sql_words(name: &str) -> String {
    match name.to_ascii_uppercase().as_str() {
        "BOOL" => "a boolean".to_owned(),
        "INT2" | "INT4" | "INT8" => "an integer".to_owned(),
        "NUMERIC" | "FLOAT4" | "FLOAT8" => "a number".to_owned(),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => "text".to_owned(),
        "VOID" => "nothing (void)".to_owned(),
        other => format!("a value of type {}", other.to_lowercase()),
    }
}

/// A query's one boolean as words: `true`, `false` or `NULL`.
pub fn boolean(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "true",
        Some(false) => "false",
        None => "NULL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_mismatch_names_sql_types_and_never_rust_ones() {
        let sqlx_text = "mismatched types; Rust type `core::option::Option<bool>` (as SQL type `BOOL`) is not compatible with SQL type `INT4`";
        let (expected, found) = mismatched_types(sqlx_text).expect("parsed");
        assert_eq!(
            (expected.as_str(), found.as_str()),
            ("a boolean", "an integer")
        );
        let err = sqlx::Error::ColumnDecode {
            index: "0".to_owned(),
            source: sqlx_text.into(),
        };
        let text = explain(&err);
        assert!(!text.contains("Rust") && !text.contains("Option"), "{text}");
        assert!(text.contains("return a boolean"), "{text}");
    }

    #[test]
    fn a_missing_row_says_what_the_query_must_return() {
        assert!(explain(&sqlx::Error::RowNotFound).contains("exactly one"));
    }
}
