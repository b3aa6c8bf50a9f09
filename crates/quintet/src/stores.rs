//! Picks each service's adapter from the `--store` URL (and the receipts
//! service's from `--receipts-queue` and `--receipts-ledger`, calc's event
//! log from `--calc-events`): the one place where a URL becomes an engine.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use calc::adapters::nats::{self as calc_nats, NatsEventLog};
use calc::adapters::postgres::PostgresEventLog;
use calc::adapters::redb::RedbEventLog;
use calc::ports::EventLog;
use counters::adapters::postgres::PostgresCounterStore;
use counters::adapters::redb::RedbCounterStore;
use counters::ports::CounterStore;
use kv::adapters::aws::AwsSettings;
use kv::adapters::dynamodb::{DEFAULT_TABLE, DynamoKvStore};
use kv::adapters::postgres::PostgresKvStore;
use kv::ports::KvStore;
use messages::adapters::postgres::PostgresMessageStore;
use messages::ports::MessageStore;
use receipts::adapters::dynamodb_ledger::{self, DynamoLedger};
use receipts::adapters::postgres_ledger::PostgresLedger;
use receipts::adapters::redb_ledger::RedbLedger;
use receipts::adapters::redb_queue::RedbJobQueue;
use receipts::adapters::sqs::SqsJobQueue;
use receipts::ports::{JobQueue, TransactionLedger};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// A store, queue or event-log URL `serve` refuses. The text never repeats
/// the URL (it may hold a password); it says what is wrong and what is taken.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all (a bad port, an empty host, a space).
    #[error("not a valid URL: {0}")]
    Syntax(#[source] url::ParseError),
    /// A `--store` engine there is no adapter for (the scheme, shortened).
    #[error(
        "unknown store '{0}': use redb, redb:///dir, postgres://… or (kv, receipts ledger) \
         dynamodb://table"
    )]
    UnknownStore(String),
    /// A `--receipts-queue` engine there is no adapter for.
    #[error("unknown queue engine '{0}': use redb, redb:///dir or sqs://[?region=…&endpoint=…]")]
    UnknownQueue(String),
    /// A `--calc-events` engine there is no adapter for.
    #[error(
        "unknown event log '{0}': use redb, redb:///dir, postgres://…, nats://host:4222 or none"
    )]
    UnknownEventLog(String),
    /// `postgres://` with nothing after it.
    #[error("a PostgreSQL URL needs a host: postgres://user@host:5432/db")]
    PostgresHost,
    /// sqlx refused the URL (its text is not repeated).
    #[error(transparent)]
    Postgres(#[from] platform::postgres::ConnectError),
    /// A `dynamodb://` table name or an AWS `?region=…&endpoint=…` option.
    #[error(transparent)]
    Aws(Box<dyn std::error::Error + Send + Sync>),
    /// `create=` other than `true` or `false`.
    #[error("create= must be true or false")]
    Create,
    /// `sqs://` with a host or path (queues are named by other options).
    #[error(
        "sqs:// takes no host or path (queues are named by --receipts-input-queue, \
         --receipts-dead-letter-queue and each job's post_queue): sqs://?region=…&endpoint=…"
    )]
    SqsPath,
    /// A NATS URL without a host, or with a path.
    #[error("a NATS URL is nats://host:port[?stream=…&subject=…]")]
    Nats,
    /// `stream=` that is not a stream name.
    #[error("stream= must be letters, digits, - or _")]
    NatsStream,
    /// `subject=` that is not a plain subject.
    #[error("subject= must be dot-separated tokens without spaces or wildcards")]
    NatsSubject,
    /// A NATS URL option other than `stream=` and `subject=`.
    #[error("unknown NATS URL option '{0}': use stream= and subject=")]
    NatsOption(String),
    /// `--calc-events dynamodb://…`.
    #[error("calc events cannot go to DynamoDB")]
    EventsInDynamoDb,
}

impl UrlError {
    /// At most 40 characters of what the user wrote, for "unknown …" errors.
    fn short(text: &str) -> String {
        text.chars().take(40).collect()
    }
}

/// A service asked to keep its data in an engine that has no adapter for it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{service} cannot keep its data in {store}; DynamoDB is for kv only (and the receipts \
     ledger): give kv its own store with --kv-store, the ledger --receipts-ledger, and keep \
     --store redb or postgres://…"
)]
pub struct Unsupported {
    service: &'static str,
    store: String,
}

/// An engine-only value (`redb`, `none`) or a URL. Bare words have no `:`.
enum Given {
    Word(String),
    Url(Url),
}

impl Given {
    fn parse(text: &str) -> Result<Self, UrlError> {
        match Url::parse(text) {
            Ok(url) => Ok(Given::Url(url)),
            Err(url::ParseError::RelativeUrlWithoutBase) => Ok(Given::Word(text.to_owned())),
            Err(error) => Err(UrlError::Syntax(error)),
        }
    }

    fn scheme(&self) -> &str {
        match self {
            Given::Word(word) => word,
            Given::Url(url) => url.scheme(),
        }
    }
}

/// The directory of `redb:///dir` (absolute) or `redb://dir` (relative);
/// `None` for `redb` or `redb://` alone, the data directory then.
fn redb_dir(given: &Given) -> Result<Option<PathBuf>, UrlError> {
    let Given::Url(url) = given else {
        return Ok(None);
    };
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() && url.path().is_empty() {
        return Ok(None);
    }
    // Percent-decoded as a file URL's path is.
    let path = Url::parse("file:///")
        .and_then(|root| root.join(url.path()))
        .map_err(UrlError::Syntax)?
        .to_file_path()
        .unwrap_or_else(|()| PathBuf::from(url.path()));
    Ok(Some(if host.is_empty() {
        path
    } else {
        let relative = path.strip_prefix("/").unwrap_or(&path);
        PathBuf::from(host).join(relative)
    }))
}

/// A parsed `--store` value.
#[derive(Clone)]
pub enum StoreUrl {
    /// Embedded redb files, in the data dir unless a directory is given.
    Redb {
        /// The directory, when not the data dir.
        dir: Option<PathBuf>,
    },
    /// A `PostgreSQL` connection URL (may hold a password: never printed).
    Postgres(SecretString),
    /// An Amazon `DynamoDB` table (kv, the receipts ledger), in the seed's table shape.
    DynamoDb {
        /// The table name.
        table: String,
        /// Region, endpoint and retries (the SDK's defaults when not given).
        settings: AwsSettings,
        /// Create the table (on-demand billing) when it does not exist.
        create: bool,
    },
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Redb { dir } => write!(f, "Redb {{ dir: {dir:?} }}"),
            StoreUrl::Postgres(_) => f.write_str("Postgres([redacted])"),
            StoreUrl::DynamoDb {
                table,
                settings,
                create,
            } => write!(
                f,
                "DynamoDb {{ table: {table:?}, settings: {settings:?}, create: {create} }}"
            ),
        }
    }
}

impl FromStr for StoreUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text, DEFAULT_TABLE)
    }
}

/// `create=true|false` from a URL query's extra pairs (default false).
fn create_flag(extra: Vec<platform::aws::QueryPair>) -> Result<bool, UrlError> {
    let mut create = false;
    for (_, value) in extra {
        create = match value.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(UrlError::Create),
        };
    }
    Ok(create)
}

impl StoreUrl {
    /// A store URL, a `DynamoDB` table defaulting to `default_table`.
    fn parse(text: &str, default_table: &str) -> Result<Self, UrlError> {
        let given = Given::parse(text)?;
        match (given.scheme(), &given) {
            ("redb" | "embedded", _) => Ok(StoreUrl::Redb {
                dir: redb_dir(&given)?,
            }),
            // A host, or a path or query naming a socket directory.
            ("postgres" | "postgresql", Given::Url(url))
                if url.host_str().is_some_and(|host| !host.is_empty())
                    || !url.path().is_empty()
                    || url.query().is_some() =>
            {
                platform::postgres::parse_url(text)?;
                Ok(StoreUrl::Postgres(SecretString::from(text)))
            }
            ("postgres" | "postgresql", _) => Err(UrlError::PostgresHost),
            ("dynamodb", Given::Url(url)) => Self::dynamodb(Some(url), default_table),
            ("dynamodb", Given::Word(_)) => Self::dynamodb(None, default_table),
            (other, _) => Err(UrlError::UnknownStore(UrlError::short(other))),
        }
    }

    /// A `dynamodb://[table][?query]` URL, `default_table` when none is named.
    /// `dynamodb` alone is the default table with the SDK's settings.
    fn dynamodb(url: Option<&Url>, default_table: &str) -> Result<Self, UrlError> {
        let (settings, extra) =
            AwsSettings::from_query(url.and_then(Url::query).unwrap_or_default(), &["create"])
                .map_err(|e| UrlError::Aws(e.into()))?;
        let table = url.map_or_else(String::new, |url| {
            format!("{}{}", url.host_str().unwrap_or_default(), url.path())
        });
        let table = if table.is_empty() {
            default_table.to_owned()
        } else {
            table
        };
        platform::aws::dynamodb::validate_table_name(&table)
            .map_err(|e| UrlError::Aws(e.into()))?;
        Ok(StoreUrl::DynamoDb {
            table,
            settings,
            create: create_flag(extra)?,
        })
    }

    /// A `--receipts-ledger` value (or the `--store` value standing in for
    /// it): any store URL, a `DynamoDB` table defaulting to the seed's
    /// `TransactionIdTable`.
    pub fn receipts_ledger(text: &str) -> Result<Self, UrlError> {
        Self::parse(text, dynamodb_ledger::DEFAULT_TABLE)
    }

    /// A short description for logs, without credentials.
    pub fn describe(&self) -> String {
        match self {
            StoreUrl::Redb { dir } => format!(
                "embedded ({})",
                dir.as_deref()
                    .map_or("data dir".into(), |d| d.display().to_string())
            ),
            StoreUrl::Postgres(url) => format!(
                "postgres ({})",
                platform::postgres::describe_url(url.expose_secret())
                    .unwrap_or_else(|| "invalid URL".into())
            ),
            StoreUrl::DynamoDb { table, .. } => format!("dynamodb (table {table})"),
        }
    }

    /// The error for a service that has no adapter for this store.
    fn unsupported(&self, service: &'static str) -> Unsupported {
        Unsupported {
            service,
            store: self.describe(),
        }
    }

    /// The directory embedded stores keep their files in.
    fn embedded_dir(&self, data_dir: &Path) -> PathBuf {
        match self {
            StoreUrl::Redb { dir: Some(dir) } => dir.clone(),
            _ => data_dir.to_path_buf(),
        }
    }

    fn redb_file(&self, data_dir: &Path, service: &str) -> PathBuf {
        self.embedded_dir(data_dir).join(format!("{service}.redb"))
    }

    /// A fjall store's directory, `<service>.fjall`.
    fn fjall_dir(&self, data_dir: &Path, service: &str) -> PathBuf {
        self.embedded_dir(data_dir).join(format!("{service}.fjall"))
    }
}

/// A configured URL and the option (with its environment variable) that
/// set it, so an error about the engine names what to change.
#[derive(Debug, Clone)]
pub struct Configured<T> {
    /// The parsed value.
    pub url: T,
    /// e.g. `--store (QUINTET_STORE)`.
    pub option: &'static str,
}

impl<T> Configured<T> {
    /// `url`, set by `option`.
    pub fn new(url: T, option: &'static str) -> Self {
        Self { url, option }
    }
}

/// The messages store the URL names.
pub async fn messages_store(
    store: &Configured<StoreUrl>,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn MessageStore>> {
    let what = || format!("messages store from {}", store.option);
    Ok(match &store.url {
        url @ StoreUrl::Redb { .. } => {
            // A store the redb engine wrote is migrated on the way.
            let old = url.redb_file(data_dir, "messages");
            let new = url.fjall_dir(data_dir, "messages");
            let opened = tokio::task::spawn_blocking(move || {
                messages::adapters::migrate::open_embedded(&old, &new)
            })
            .await
            .context("the messages store's opening task failed")?;
            Arc::new(opened.with_context(what)?)
        }
        StoreUrl::Postgres(url) => Arc::new(
            PostgresMessageStore::connect(url.expose_secret())
                .await
                .with_context(what)?,
        ),
        url @ StoreUrl::DynamoDb { .. } => return Err(url.unsupported("messages").into()),
    })
}

/// The counters store the URL names.
pub async fn counters_store(
    store: &Configured<StoreUrl>,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn CounterStore>> {
    let what = || format!("counters store from {}", store.option);
    Ok(match &store.url {
        url @ StoreUrl::Redb { .. } => {
            let path = url.redb_file(data_dir, "counters");
            Arc::new(RedbCounterStore::open(&path).with_context(what)?)
        }
        StoreUrl::Postgres(url) => Arc::new(
            PostgresCounterStore::connect(url.expose_secret())
                .await
                .with_context(what)?,
        ),
        url @ StoreUrl::DynamoDb { .. } => return Err(url.unsupported("counters").into()),
    })
}

/// The kv store the URL names.
pub async fn kv_store(
    store: &Configured<StoreUrl>,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn KvStore>> {
    let what = || format!("kv store from {}", store.option);
    Ok(match &store.url {
        url @ StoreUrl::Redb { .. } => {
            // A store the redb engine wrote is migrated on the way.
            let old = url.redb_file(data_dir, "kv");
            let new = url.fjall_dir(data_dir, "kv");
            let opened = tokio::task::spawn_blocking(move || {
                kv::adapters::migrate::open_embedded(&old, &new)
            })
            .await
            .context("the kv store's opening task failed")?;
            Arc::new(opened.with_context(what)?)
        }
        StoreUrl::Postgres(url) => Arc::new(
            PostgresKvStore::connect(url.expose_secret())
                .await
                .with_context(what)?,
        ),
        StoreUrl::DynamoDb {
            table,
            settings,
            create,
        } => Arc::new(
            DynamoKvStore::connect(settings, table, *create)
                .await
                .with_context(what)?,
        ),
    })
}

/// A parsed `--receipts-queue` value.
#[derive(Debug, Clone)]
pub enum QueueUrl {
    /// The embedded queue, `receipts-queue.redb` in the data dir unless a directory is given.
    Redb {
        /// The directory, when not the data dir.
        dir: Option<PathBuf>,
    },
    /// Amazon SQS, queues by name.
    Sqs {
        /// Region, endpoint and retries (the SDK's defaults when not given).
        settings: AwsSettings,
        /// Create missing queues (development, tests).
        create: bool,
    },
}

impl FromStr for QueueUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let given = Given::parse(text)?;
        match (given.scheme(), &given) {
            ("redb" | "embedded", _) => Ok(QueueUrl::Redb {
                dir: redb_dir(&given)?,
            }),
            ("sqs", _) => {
                let url = match &given {
                    Given::Url(url) => Some(url),
                    Given::Word(_) => None,
                };
                if url.is_some_and(|url| {
                    url.host_str().is_some_and(|host| !host.is_empty()) || !url.path().is_empty()
                }) {
                    return Err(UrlError::SqsPath);
                }
                let (settings, extra) = AwsSettings::from_query(
                    url.and_then(Url::query).unwrap_or_default(),
                    &["create"],
                )
                .map_err(|e| UrlError::Aws(e.into()))?;
                Ok(QueueUrl::Sqs {
                    settings,
                    create: create_flag(extra)?,
                })
            }
            (other, _) => Err(UrlError::UnknownQueue(UrlError::short(other))),
        }
    }
}

impl QueueUrl {
    /// A short description for logs.
    pub fn describe(&self) -> String {
        match self {
            QueueUrl::Redb { dir } => format!(
                "redb ({})",
                dir.as_deref()
                    .map_or("data dir".into(), |d| d.display().to_string())
            ),
            QueueUrl::Sqs { settings, .. } => format!(
                "sqs ({})",
                settings.region.as_deref().unwrap_or("default region")
            ),
        }
    }
}

/// The receipts service's queue the URL names.
pub async fn receipts_queue(
    queue: &Configured<QueueUrl>,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn JobQueue>> {
    let what = || format!("receipts queue from {}", queue.option);
    Ok(match &queue.url {
        QueueUrl::Redb { dir } => {
            let path = dir
                .as_deref()
                .unwrap_or(data_dir)
                .join("receipts-queue.redb");
            Arc::new(RedbJobQueue::open(&path).with_context(what)?)
        }
        QueueUrl::Sqs { settings, create } => Arc::new(
            SqsJobQueue::connect(settings)
                .await
                .with_context(what)?
                .create_queues(*create),
        ),
    })
}

/// The receipts ledger the URL names.
pub async fn receipts_ledger(
    ledger: &Configured<StoreUrl>,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn TransactionLedger>> {
    let what = || format!("receipts ledger from {}", ledger.option);
    Ok(match &ledger.url {
        url @ StoreUrl::Redb { .. } => {
            let path = url.redb_file(data_dir, "receipts");
            Arc::new(RedbLedger::open(&path).with_context(what)?)
        }
        StoreUrl::Postgres(url) => Arc::new(
            PostgresLedger::connect(url.expose_secret())
                .await
                .with_context(what)?,
        ),
        StoreUrl::DynamoDb {
            table,
            settings,
            create,
        } => Arc::new(
            DynamoLedger::connect(settings, table, *create)
                .await
                .with_context(what)?,
        ),
    })
}

/// A parsed `--calc-events` value.
#[derive(Clone)]
pub enum EventsUrl {
    /// Calculations are not recorded.
    Off,
    /// A redb file or a `PostgreSQL` table.
    Store(StoreUrl),
    /// A NATS `JetStream` stream.
    Nats {
        /// `nats://[user:password@]host[:port]`: may hold credentials.
        server: SecretString,
        /// `host[:port]`, for logs.
        host: String,
        /// The stream events are kept in.
        stream: String,
        /// The subject events are published on.
        subject: String,
    },
}

impl EventsUrl {
    /// `--calc-events`, or without it the `--store` engine (a `DynamoDB`
    /// `--store` is for kv and the ledger: events then go to redb).
    pub fn parse(text: Option<&str>, store: &StoreUrl) -> Result<Self, UrlError> {
        let Some(text) = text else {
            return Ok(match store {
                StoreUrl::DynamoDb { .. } => EventsUrl::Store(StoreUrl::Redb { dir: None }),
                other => EventsUrl::Store(other.clone()),
            });
        };
        let given = Given::parse(text)?;
        match (given.scheme(), &given) {
            ("none" | "off", Given::Word(_)) => Ok(EventsUrl::Off),
            ("nats", Given::Url(url)) => Self::nats(url.clone()),
            ("nats", Given::Word(_)) => Err(UrlError::Nats),
            ("redb" | "embedded" | "postgres" | "postgresql", _) => {
                match text.parse::<StoreUrl>()? {
                    store @ (StoreUrl::Redb { .. } | StoreUrl::Postgres(_)) => {
                        Ok(EventsUrl::Store(store))
                    }
                    StoreUrl::DynamoDb { .. } => Err(UrlError::EventsInDynamoDb),
                }
            }
            (other, _) => Err(UrlError::UnknownEventLog(UrlError::short(other))),
        }
    }

    /// `nats://[user:password@]host[:port][?stream=…&subject=…]`.
    fn nats(mut url: Url) -> Result<Self, UrlError> {
        let host = match url.host_str() {
            Some(host) if !host.is_empty() && matches!(url.path(), "" | "/") => host,
            _ => return Err(UrlError::Nats),
        };
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let mut stream = calc_nats::DEFAULT_STREAM.to_owned();
        let mut subject = calc_nats::DEFAULT_SUBJECT.to_owned();
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "stream" if valid_stream_name(&value) => stream = value.into_owned(),
                "stream" => return Err(UrlError::NatsStream),
                "subject" if valid_subject(&value) => subject = value.into_owned(),
                "subject" => return Err(UrlError::NatsSubject),
                other => return Err(UrlError::NatsOption(UrlError::short(other))),
            }
        }
        url.set_query(None);
        url.set_path("");
        Ok(EventsUrl::Nats {
            server: SecretString::from(url.as_str()),
            host,
            stream,
            subject,
        })
    }

    /// A short description for logs, without credentials.
    pub fn describe(&self) -> String {
        match self {
            EventsUrl::Off => "none".to_owned(),
            EventsUrl::Store(store) => store.describe(),
            EventsUrl::Nats { host, stream, .. } => format!("nats ({host}, stream {stream})"),
        }
    }
}

fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject
            .split('.')
            .all(|token| !token.is_empty() && !token.contains(['*', '>', ' ', '\t']))
}

/// calc's event log as the URL names it (`None`: events are off). A NATS
/// log connects in the background, so an unreachable server does not stop
/// the start: calc answers, its events wait in the recorder's buffer, and
/// readiness names the log until it is reached.
pub async fn calc_event_log(
    events: &Configured<EventsUrl>,
    data_dir: &Path,
) -> anyhow::Result<Option<Arc<dyn EventLog>>> {
    let what = || format!("calc event log from {}", events.option);
    Ok(match &events.url {
        EventsUrl::Off => None,
        EventsUrl::Store(store @ StoreUrl::Redb { .. }) => {
            let path = store.redb_file(data_dir, "calc-events");
            Some(Arc::new(RedbEventLog::open(&path).with_context(|| {
                format!("{}: {}", what(), path.display())
            })?))
        }
        EventsUrl::Store(StoreUrl::Postgres(url)) => Some(Arc::new(
            PostgresEventLog::connect(url.expose_secret())
                .await
                .with_context(what)?,
        )),
        EventsUrl::Store(other) => return Err(other.unsupported("calc").into()),
        EventsUrl::Nats {
            server,
            stream,
            subject,
            ..
        } => Some(Arc::new(NatsEventLog::connect_in_background(
            server.expose_secret(),
            stream,
            subject,
        ))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_debug_hides_passwords() {
        assert!(matches!(
            "redb".parse::<StoreUrl>(),
            Ok(StoreUrl::Redb { dir: None })
        ));
        assert!(matches!(
            "redb:///var/q".parse::<StoreUrl>(),
            Ok(StoreUrl::Redb { dir: Some(_) })
        ));
        let pg: StoreUrl = "postgres://u:hunter2@db/x".parse().expect("valid");
        assert!(!format!("{pg:?}").contains("hunter2"));
        assert_eq!(pg.describe(), "postgres (db:5432/x)");
        let err = "postgres://u:hunter2@db:port/x"
            .parse::<StoreUrl>()
            .expect_err("not a port");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(
            "dynamodb://a".parse::<StoreUrl>().is_err(),
            "table names are 3+ chars"
        );
        let Ok(StoreUrl::DynamoDb {
            table,
            settings,
            create,
        }) = "dynamodb://?endpoint=http://127.0.0.1:5000&create=true".parse::<StoreUrl>()
        else {
            panic!("a dynamodb URL parses");
        };
        assert_eq!(table, "key_value_table");
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(create);
        assert!("dynamodb://tbl?create=yes".parse::<StoreUrl>().is_err());
        assert!(matches!(
            "dynamodb".parse::<StoreUrl>(),
            Ok(StoreUrl::DynamoDb { table, .. }) if table == "key_value_table"
        ));
        assert!(matches!(
            "redb:///var/my%20data".parse::<StoreUrl>(),
            Ok(StoreUrl::Redb { dir: Some(dir) }) if dir == Path::new("/var/my data")
        ));
        assert!(matches!(
            "redb://data/q".parse::<StoreUrl>(),
            Ok(StoreUrl::Redb { dir: Some(dir) }) if dir == Path::new("data/q")
        ));
        assert!(matches!(
            "postgres:///db?host=/run/postgresql".parse::<StoreUrl>(),
            Ok(StoreUrl::Postgres(_))
        ));
        assert!(matches!(
            "postgres://".parse::<StoreUrl>(),
            Err(UrlError::PostgresHost)
        ));
        let err = "mysql://u:hunter2@db"
            .parse::<StoreUrl>()
            .expect_err("refused");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn receipts_queue_and_ledger_urls_parse() {
        assert!(matches!(
            "redb".parse::<QueueUrl>(),
            Ok(QueueUrl::Redb { dir: None })
        ));
        assert!(matches!(
            "redb:///var/q".parse::<QueueUrl>(),
            Ok(QueueUrl::Redb { dir: Some(_) })
        ));
        let Ok(QueueUrl::Sqs { settings, create }) =
            "sqs://?region=eu-west-1&endpoint=http://127.0.0.1:5000&create=true"
                .parse::<QueueUrl>()
        else {
            panic!("an sqs URL parses");
        };
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(create);
        assert!(matches!(
            "sqs://".parse::<QueueUrl>(),
            Ok(QueueUrl::Sqs { create: false, .. })
        ));
        assert!("sqs://queue-name".parse::<QueueUrl>().is_err());
        assert!("sqs://?create=maybe".parse::<QueueUrl>().is_err());
        assert!("sqs://?secret=x".parse::<QueueUrl>().is_err());
        assert!("kafka://x".parse::<QueueUrl>().is_err());

        let Ok(StoreUrl::DynamoDb { table, create, .. }) =
            StoreUrl::receipts_ledger("dynamodb://?endpoint=http://127.0.0.1:5000")
        else {
            panic!("a dynamodb ledger URL parses");
        };
        assert_eq!(table, "TransactionIdTable");
        assert!(!create);
        assert!(matches!(
            StoreUrl::receipts_ledger("dynamodb://Claims?create=true"),
            Ok(StoreUrl::DynamoDb { table, create: true, .. }) if table == "Claims"
        ));
        assert!(matches!(
            StoreUrl::receipts_ledger("redb"),
            Ok(StoreUrl::Redb { dir: None })
        ));
        assert!(matches!(
            StoreUrl::receipts_ledger("postgres://u:p@db/x"),
            Ok(StoreUrl::Postgres(_))
        ));
        assert!(StoreUrl::receipts_ledger("dynamodb://tbl?create=1").is_err());
    }

    #[test]
    fn calc_event_urls_parse_and_default_to_the_store() {
        let redb = StoreUrl::Redb { dir: None };
        assert!(matches!(
            EventsUrl::parse(None, &redb),
            Ok(EventsUrl::Store(StoreUrl::Redb { .. }))
        ));
        let pg: StoreUrl = "postgres://u:hunter2@db/x".parse().expect("valid");
        assert!(matches!(
            EventsUrl::parse(None, &pg),
            Ok(EventsUrl::Store(StoreUrl::Postgres(_)))
        ));
        let dynamo: StoreUrl = "dynamodb://table".parse().expect("valid");
        assert!(matches!(
            EventsUrl::parse(None, &dynamo),
            Ok(EventsUrl::Store(StoreUrl::Redb { dir: None }))
        ));
        assert!(matches!(
            EventsUrl::parse(Some("none"), &redb),
            Ok(EventsUrl::Off)
        ));
        let Ok(EventsUrl::Nats {
            server,
            stream,
            subject,
            ..
        }) = EventsUrl::parse(
            Some("nats://u:hunter2@127.0.0.1:4222?stream=S1&subject=a.b"),
            &redb,
        )
        else {
            panic!("a NATS URL parses");
        };
        assert_eq!(server.expose_secret(), "nats://u:hunter2@127.0.0.1:4222");
        assert_eq!((stream.as_str(), subject.as_str()), ("S1", "a.b"));
        let nats = EventsUrl::parse(Some("nats://u:hunter2@h:4222"), &redb).expect("valid");
        assert!(!nats.describe().contains("hunter2"));
        assert!(EventsUrl::parse(Some("nats://"), &redb).is_err());
        assert!(EventsUrl::parse(Some("nats://h?stream=a.b"), &redb).is_err());
        assert!(EventsUrl::parse(Some("nats://h?subject=a.*"), &redb).is_err());
        assert!(EventsUrl::parse(Some("nats://h?other=1"), &redb).is_err());
        assert!(EventsUrl::parse(Some("dynamodb://t"), &redb).is_err());
        assert!(EventsUrl::parse(Some("nats://h:42x"), &redb).is_err());
        assert!(EventsUrl::parse(Some("nats://u:p@:4222"), &redb).is_err());
        assert!(EventsUrl::parse(Some("nats://[::1]:4222"), &redb).is_ok());
        assert!(EventsUrl::parse(Some("nats://nats.svc"), &redb).is_ok());
        assert_eq!(nats.describe(), "nats (h:4222, stream QUINTET_CALC_EVENTS)");
        assert!(EventsUrl::parse(Some("kafka://x"), &redb).is_err());
    }
}
