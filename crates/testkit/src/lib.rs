//! Test helpers shared by quintet's crates (dev-dependency only).
//!
//! `PostgreSQL` tests run against the server at `QUINTET_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), each in a schema of its
//! own so they run in parallel. They never skip: with no `PostgreSQL`, they fail.
//! AWS adapter tests use the moto server from [`moto`].

// Only tests call these helpers: a setup that fails panics, failing the
// test that called it (as the integration test roots allow).
#![allow(clippy::expect_used, clippy::missing_panics_doc)]

pub mod fuzz;
pub mod moto;
pub mod otlp;

/// The `PostgreSQL` server the tests use.
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

/// Generates the two modules of a store contract suite: `on_redb` and
/// `on_postgres`, each running every listed test. The suite's file defines
/// `async fn redb() -> Subject`, `async fn postgres() -> (Subject, schema)`
/// and one `async fn <test>(Subject)` per name; a `PostgreSQL` test's schema is
/// dropped once it has passed.
///
/// `store_contract!(also on_dynamodb = dynamodb, on_fjall = fjall; tests…)`
/// adds a module per engine only some services have, each built by its
/// `async fn <engine>() -> Subject`.
#[macro_export]
macro_rules! store_contract {
    (@also [$names:tt] $module:ident = $engine:ident $(, $more:ident = $more_engine:ident)*) => {
        mod $module {
            $crate::store_contract!(@tests $engine $names);
        }
        $crate::store_contract!(@also [$names] $($more = $more_engine),*);
    };
    (@also [$names:tt]) => {};
    (@tests $engine:ident [$($name:ident),*]) => {
        $(#[tokio::test] async fn $name() { super::$name(super::$engine().await).await; })*
    };
    (also $($module:ident = $engine:ident),+; $($name:ident),* $(,)?) => {
        $crate::store_contract!($($name),*);
        $crate::store_contract!(@also [[$($name),*]] $($module = $engine),+);
    };
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(#[tokio::test] async fn $name() { super::$name(super::redb().await).await; })*
        }
        mod on_postgres {
            $(#[tokio::test] async fn $name() {
                let (subject, schema) = super::postgres().await;
                super::$name(subject).await;
                $crate::drop_schema(&schema).await;
            })*
        }
    };
}
