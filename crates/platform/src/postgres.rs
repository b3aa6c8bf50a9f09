//! What every PostgreSQL adapter does the same way: connect with bounded
//! waits and apply the service's own embedded migrations, and say where a
//! URL points (host, port, database) without its password.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::backend::{BackendError, FailureKind};

/// How long opening a pool waits for its first connection. sqlx retries a
/// refused connection within it, so a server still starting up is waited for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a pool could not be opened. Never holds the URL (it may carry a
/// password): the server is named by host and port. Each message already
/// includes its cause in short, for adapters that carry it as text.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse; its text is not repeated.
    #[error("invalid PostgreSQL URL: {}", short(.0))]
    InvalidUrl(#[source] sqlx::Error),
    /// Nothing at the URL's host and port accepted a connection.
    #[error(
        "cannot reach PostgreSQL at {endpoint} ({}): is it running there, and are the host \
         and port right?",
        short(.source)
    )]
    Unreachable {
        /// The server's `host:port` (never the URL).
        endpoint: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The server answered but refused the login or the database.
    #[error(
        "PostgreSQL at {endpoint} refused the connection ({}): check the user, password and \
         database name",
        short(.source)
    )]
    Refused {
        /// The server's `host:port` (never the URL).
        endpoint: String,
        /// The driver's error, with the server's reason.
        #[source]
        source: sqlx::Error,
    },
    /// The service's schema could not be brought up to date.
    #[error("migrating the {service} schema on PostgreSQL at {endpoint}: {source}")]
    Migration {
        /// The service whose migrations failed.
        service: String,
        /// The server's `host:port` (never the URL).
        endpoint: String,
        /// What the migrator reported.
        #[source]
        source: MigrateError,
    },
}

impl ConnectError {
    /// What kind of failure it is, for retry policies and readiness.
    #[must_use]
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Unreachable { .. } => FailureKind::Unreachable,
            Self::InvalidUrl(_) | Self::Refused { .. } => FailureKind::Rejected,
            Self::Migration { .. } => FailureKind::Other,
        }
    }
}

/// "postgres connect: <kind>", with the whole [`ConnectError`] (the endpoint
/// and the cause, never the URL) as its source.
impl From<ConnectError> for BackendError {
    fn from(error: ConnectError) -> Self {
        BackendError::new("postgres", "connect", error.kind(), error)
    }
}

/// A sqlx error in a few words: the I/O or server message, not the wrapper.
fn short(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::PoolTimedOut => format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
        other => other.to_string(),
    }
}

/// A round trip to the server (`SELECT 1`): a store's readiness ping.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Parses a `postgres://` URL without connecting: for checking configuration up front.
pub fn parse_url(url: &str) -> Result<PgConnectOptions, ConnectError> {
    PgConnectOptions::from_str(url).map_err(ConnectError::InvalidUrl)
}

/// `host:port` of parsed options (or the socket directory), for messages.
pub fn endpoint(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

/// `host:port/database` of a URL for logs, never its user or password;
/// `None` if it does not parse.
pub fn describe_url(url: &str) -> Option<String> {
    let options = parse_url(url).ok()?;
    Some(match options.get_database() {
        Some(db) => format!("{}/{db}", endpoint(&options)),
        None => endpoint(&options),
    })
}

/// Connects a pool of up to `max_connections` to `url` and runs `migrator`.
/// Every service keeps its own timestamp-versioned migrations in the same
/// database, so migrations of other services are not errors.
pub async fn connect_pool(
    url: &str,
    migrator: Migrator,
    service: &str,
    max_connections: u32,
) -> Result<PgPool, ConnectError> {
    let options = parse_url(url)?;
    let endpoint = endpoint(&options);
    let pool = match PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options.clone())
        .await
    {
        Ok(pool) => pool,
        // The pool retried until its timeout and kept no cause: one direct
        // try says why (refused, no route, DNS), bounded by the same time.
        Err(sqlx::Error::PoolTimedOut) => {
            let source = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
                Ok(Err(cause)) => cause,
                Ok(Ok(_)) | Err(_) => sqlx::Error::PoolTimedOut,
            };
            return Err(classify(endpoint, source));
        }
        Err(source) => return Err(classify(endpoint, source)),
    };
    let mut migrator = migrator;
    migrator.set_ignore_missing(true);
    migrator
        .run(&pool)
        .await
        .map_err(|source| ConnectError::Migration {
            service: service.to_owned(),
            endpoint,
            source,
        })?;
    Ok(pool)
}

/// A server's answer is a refusal; anything else is "not reached".
fn classify(endpoint: String, source: sqlx::Error) -> ConnectError {
    match source {
        sqlx::Error::Database(_) => ConnectError::Refused { endpoint, source },
        sqlx::Error::Configuration(_) => ConnectError::InvalidUrl(source),
        source => ConnectError::Unreachable { endpoint, source },
    }
}

/// [`connect_pool`] with 8 connections.
pub async fn connect(url: &str, migrator: Migrator, service: &str) -> Result<PgPool, ConnectError> {
    connect_pool(url, migrator, service, 8).await
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
    use super::*;

    #[test]
    fn urls_are_described_by_host_port_and_database_never_the_password() {
        assert_eq!(
            describe_url("postgres://app:hunter2@db.internal:6432/orders").as_deref(),
            Some("db.internal:6432/orders")
        );
        assert_eq!(
            describe_url("postgres://app:hunter2@127.0.0.1/x").as_deref(),
            Some("127.0.0.1:5432/x")
        );
        let err = parse_url("postgres://app:hunter2@db:notaport/x").expect_err("bad port");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_by_host_and_port_with_the_cause() {
        let err = connect_pool(
            "postgres://app:hunter2@127.0.0.1:1/db",
            Migrator::DEFAULT,
            "test",
            1,
        )
        .await
        .expect_err("nothing listens on port 1");
        let text = err.to_string();
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{text}");
        assert!(
            text.starts_with("cannot reach PostgreSQL at 127.0.0.1:1 ("),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let backend = BackendError::from(err);
        assert_eq!(backend.kind(), FailureKind::Unreachable);
        assert!(
            crate::backend::chain(&backend).contains("cannot reach PostgreSQL at 127.0.0.1:1"),
            "{backend}"
        );
    }

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
        assert_eq!(like_prefix(""), "%");
    }
}
