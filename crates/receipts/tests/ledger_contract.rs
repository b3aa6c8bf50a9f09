//! The one contract every `TransactionLedger` adapter must honour, run
//! against the real engines: redb in a temporary directory, `PostgreSQL` (a
//! schema of its own per test) and `DynamoDB` on moto (a table of its own per
//! test), see `testkit`. These tests never skip.

// A test that unwraps is a test that fails on the unexpected value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use platform::aws::AwsSettings;
use receipts::adapters::dynamodb_ledger::DynamoLedger;
use receipts::adapters::postgres_ledger::PostgresLedger;
use receipts::adapters::redb_ledger::RedbLedger;
use receipts::domain::UserId;
use receipts::ports::{Claim, LedgerError, TransactionLedger};

/// A fresh ledger, and how to open the same ledger again.
struct Subject {
    ledger: Arc<dyn TransactionLedger>,
    engine: Engine,
}

enum Engine {
    Redb {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
    },
    DynamoDb {
        settings: AwsSettings,
        table: String,
    },
}

impl Subject {
    /// Closes this ledger and opens the same store again (redb: the file;
    /// `PostgreSQL`: a new pool on the same schema; `DynamoDB`: a new client on
    /// the same table).
    async fn reopen(self) -> Subject {
        self.ledger.close().await;
        drop(self.ledger);
        let ledger: Arc<dyn TransactionLedger> = match &self.engine {
            Engine::Redb { path, .. } => Arc::new(RedbLedger::open(path).expect("reopen redb")),
            Engine::Postgres { url } => {
                Arc::new(PostgresLedger::connect(url).await.expect("reconnect"))
            }
            Engine::DynamoDb { settings, table } => Arc::new(
                DynamoLedger::connect(settings, table, false)
                    .await
                    .expect("reconnect to the table"),
            ),
        };
        Subject {
            ledger,
            engine: self.engine,
        }
    }
}

// Every subject is made the same (async) way.
#[allow(clippy::unused_async)]
async fn redb() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.redb");
    let ledger = RedbLedger::open(&path).expect("open redb");
    Subject {
        ledger: Arc::new(ledger),
        engine: Engine::Redb { path, _dir: dir },
    }
}

async fn postgres() -> (Subject, String) {
    let (schema, url) = testkit::postgres_schema().await;
    let ledger = PostgresLedger::connect(&url)
        .await
        .expect("connect and migrate");
    (
        Subject {
            ledger: Arc::new(ledger),
            engine: Engine::Postgres { url },
        },
        schema,
    )
}

async fn dynamodb() -> Subject {
    let settings = AwsSettings::moto(testkit::moto::moto_endpoint().await);
    let table = testkit::moto::unique_name("ledger");
    let ledger = DynamoLedger::connect(&settings, &table, true)
        .await
        .expect("table created on moto");
    Subject {
        ledger: Arc::new(ledger),
        engine: Engine::DynamoDb { settings, table },
    }
}

testkit::store_contract!(
    first_claim_is_new_then_same_job_then_other_job,
    concurrent_claims_of_one_transaction_make_exactly_one_new,
    claims_survive_reopening,
    a_closed_ledger_is_unavailable,
    string_user_ids_claim_like_integer_ones,
);

/// The suite on `DynamoDB` (moto), less the racing claims: moto evaluates a
/// put's condition and writes the item without a lock across its request
/// threads, so two of 50 racing conditional puts sometimes both succeed
/// (about one run in 30). `DynamoDB` itself decides conditional writes on one
/// item atomically; that promise cannot be tested on moto.
mod on_dynamodb {
    macro_rules! on_dynamodb {
        ($($name:ident),* $(,)?) => {
            $(#[tokio::test] async fn $name() { super::$name(super::dynamodb().await).await; })*
        };
    }

    on_dynamodb!(
        first_claim_is_new_then_same_job_then_other_job,
        claims_survive_reopening,
        a_closed_ledger_is_unavailable,
        string_user_ids_claim_like_integer_ones,
    );
}

async fn first_claim_is_new_then_same_job_then_other_job(s: Subject) {
    let ledger = &s.ledger;
    assert_eq!(
        ledger.claim("1000", "job-a", &UserId::Int(7)).await,
        Ok(Claim::New)
    );
    assert_eq!(
        ledger.claim("1000", "job-a", &UserId::Int(7)).await,
        Ok(Claim::SameJob)
    );
    assert_eq!(
        ledger.claim("1000", "job-b", &UserId::Int(8)).await,
        Ok(Claim::OtherJob {
            job_id: "job-a".into()
        })
    );
    assert_eq!(
        ledger.claim("1001", "job-b", &UserId::Int(8)).await,
        Ok(Claim::New)
    );
    let long = "9".repeat(200);
    assert_eq!(
        ledger.claim(&long, "job-c", &UserId::Int(i64::MIN)).await,
        Ok(Claim::New)
    );
    assert_eq!(
        ledger.claim(&long, "job-c", &UserId::Int(i64::MIN)).await,
        Ok(Claim::SameJob)
    );
    ledger.ping().await.expect("ping");
}

/// 50 workers claim one transaction for 50 different jobs at once (they
/// share transactions on redb, race on the primary key on PostgreSQL):
/// exactly one wins, and every other is told the winner.
async fn concurrent_claims_of_one_transaction_make_exactly_one_new(s: Subject) {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let ledger = s.ledger.clone();
            tokio::spawn(async move {
                let job = format!("job-{i}");
                let claim = ledger
                    .claim("2000", &job, &UserId::Int(i))
                    .await
                    .expect("claim");
                (job, claim)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut told = Vec::new();
    for task in tasks {
        match task.await.expect("claim task") {
            (job, Claim::New) => winners.push(job),
            (_, Claim::OtherJob { job_id }) => told.push(job_id),
            (job, Claim::SameJob) => panic!("{job} never claimed before, yet SameJob"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(told.len(), 49);
    assert!(told.iter().all(|job| *job == winners[0]), "{told:?}");
    assert_eq!(
        s.ledger.claim("2000", &winners[0], &UserId::Int(0)).await,
        Ok(Claim::SameJob)
    );
}

async fn claims_survive_reopening(s: Subject) {
    assert_eq!(
        s.ledger.claim("3000", "job-a", &UserId::Int(1)).await,
        Ok(Claim::New)
    );
    assert_eq!(
        s.ledger.claim("3001", "job-b", &UserId::Int(2)).await,
        Ok(Claim::New)
    );
    let s = s.reopen().await;
    assert_eq!(
        s.ledger.claim("3000", "job-a", &UserId::Int(1)).await,
        Ok(Claim::SameJob)
    );
    assert_eq!(
        s.ledger.claim("3001", "job-a", &UserId::Int(1)).await,
        Ok(Claim::OtherJob {
            job_id: "job-b".into()
        })
    );
    assert_eq!(
        s.ledger.claim("3002", "job-a", &UserId::Int(1)).await,
        Ok(Claim::New)
    );
}

async fn a_closed_ledger_is_unavailable(s: Subject) {
    assert_eq!(
        s.ledger.claim("4000", "job-a", &UserId::Int(1)).await,
        Ok(Claim::New)
    );
    s.ledger.close().await;
    assert!(matches!(
        s.ledger.claim("4001", "job-a", &UserId::Int(1)).await,
        Err(LedgerError::Unavailable(_))
    ));
    assert!(matches!(
        s.ledger.ping().await,
        Err(LedgerError::Unavailable(_))
    ));
}

/// Jobs carry `"user_id": "user-8"` as well as `42`; what is stored for each
/// is checked per engine (below for `PostgreSQL`, in `aws.rs` for `DynamoDB`, in
/// the adapter's unit tests for redb).
async fn string_user_ids_claim_like_integer_ones(s: Subject) {
    let user = UserId::text("user-8").expect("valid user id");
    assert_eq!(s.ledger.claim("5000", "job-a", &user).await, Ok(Claim::New));
    assert_eq!(
        s.ledger.claim("5000", "job-a", &user).await,
        Ok(Claim::SameJob)
    );
    assert_eq!(
        s.ledger.claim("5000", "job-b", &UserId::Int(8)).await,
        Ok(Claim::OtherJob {
            job_id: "job-a".into()
        })
    );
    assert_eq!(
        s.ledger.claim("5001", "job-b", &UserId::Int(8)).await,
        Ok(Claim::New)
    );
    let s = s.reopen().await;
    assert_eq!(
        s.ledger.claim("5000", "job-a", &user).await,
        Ok(Claim::SameJob)
    );
    assert_eq!(
        s.ledger.claim("5001", "job-c", &user).await,
        Ok(Claim::OtherJob {
            job_id: "job-b".into()
        })
    );
}

#[tokio::test]
async fn postgres_keeps_integer_user_ids_in_user_id_and_strings_in_user_id_text() {
    let (s, schema) = postgres().await;
    let user = UserId::text("user-8").expect("valid user id");
    assert_eq!(
        s.ledger.claim("6000", "job-a", &UserId::Int(42)).await,
        Ok(Claim::New)
    );
    assert_eq!(s.ledger.claim("6001", "job-b", &user).await, Ok(Claim::New));
    let Engine::Postgres { url } = &s.engine else {
        unreachable!("a PostgreSQL subject")
    };
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let rows: Vec<(String, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT transaction_id, user_id, user_id_text FROM receipt_transactions ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("select");
    assert_eq!(
        rows,
        vec![
            ("6000".to_owned(), Some(42), None),
            ("6001".to_owned(), None, Some("user-8".to_owned())),
        ]
    );
    // One of the two, never both nor neither.
    for (user_id, user_id_text) in [(Some(1i64), Some("x")), (None, None)] {
        let refused = sqlx::query(
            "INSERT INTO receipt_transactions (transaction_id, job_id, user_id, user_id_text) \
             VALUES ('6002', 'job-c', $1, $2)",
        )
        .bind(user_id)
        .bind(user_id_text)
        .execute(&pool)
        .await;
        assert!(
            refused.is_err_and(|e| e.to_string().contains("receipt_transactions_one_user_id")),
            "{user_id:?} {user_id_text:?}"
        );
    }
    pool.close().await;
    s.ledger.close().await;
    testkit::drop_schema(&schema).await;
}
