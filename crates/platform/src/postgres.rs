//! What every PostgreSQL adapter does the same way: connect with bounded
//! waits and apply the service's own embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Connects a pool to `url` and runs `migrator`. Every service keeps its own
/// timestamp-versioned migrations in the same database, so migrations of
/// other services are not errors. Errors name `service`, never the URL.
pub async fn connect(url: &str, migrator: Migrator, service: &str) -> Result<PgPool, String> {
    let options =
        PgConnectOptions::from_str(url).map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())?;
    let mut migrator = migrator;
    migrator.set_ignore_missing(true);
    migrator
        .run(&pool)
        .await
        .map_err(|e| format!("migrating the {service} schema: {e}"))?;
    Ok(pool)
}

/// A LIKE pattern matching strings that start with `prefix` taken literally
/// (`%`, `_` and `\` escaped).
pub fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
        assert_eq!(like_prefix(""), "%");
    }
}
