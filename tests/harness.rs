//! The test harness itself: every test gets a database of its own, dropped afterwards.

mod common;

use sqlx::{Connection, Row};

#[tokio::test]
async fn each_test_database_is_fresh_unique_and_dropped_afterwards() {
    let first = common::TestDb::create().await;
    let second = common::TestDb::create().await;
    assert_ne!(first.name, second.name);
    let mut conn = first.connect().await;
    let row = sqlx::query("select current_database() as db")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert_eq!(row.get::<String, _>("db"), first.name);
    let tables: i64 =
        sqlx::query_scalar("select count(*) from pg_tables where schemaname = 'public'")
            .fetch_one(&mut conn)
            .await
            .expect("count");
    assert_eq!(tables, 0, "a new database starts empty");
    conn.close().await.expect("close");

    let name = first.name.clone();
    drop(first);
    let mut admin = sqlx::PgConnection::connect(&common::server_url())
        .await
        .expect("admin");
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("query");
    assert!(!exists, "{name} should have been dropped");
}

#[test]
fn database_urls_get_their_database_name_replaced() {
    assert_eq!(
        common::with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        common::with_database("postgres://u:p@h:1/db?sslmode=disable", "x"),
        "postgres://u:p@h:1/x?sslmode=disable"
    );
}
