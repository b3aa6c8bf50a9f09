//! Test helpers shared by quintet's crates (dev-dependency only).
//!
//! PostgreSQL tests run against the server at `QUINTET_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), each in a schema of its
//! own so they run in parallel. They never skip: with no PostgreSQL, they fail.

/// The PostgreSQL server the tests use.
pub fn postgres_url() -> String {
    std::env::var("QUINTET_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh schema: its name, and a connection URL whose `search_path` is that schema.
pub async fn postgres_schema() -> (String, String) {
    let base = postgres_url();
    let admin = sqlx::PgPool::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {base} for this test: {e}"));
    let schema = format!("qt_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    (
        schema.clone(),
        format!("{base}{sep}options[search_path]={schema}"),
    )
}

/// Drops a test schema (call once the test has passed; a failed one stays for inspection).
pub async fn drop_schema(schema: &str) {
    let admin = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("reconnect");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .expect("drop schema");
    admin.close().await;
}
