//! receipts in the fleet: every replica is a worker on one SQS input queue
//! and one `DynamoDB` ledger (moto). Jobs go in through the load balancer;
//! results are read from SQS and the ledger from `DynamoDB` with the AWS
//! SDK, not through quintet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::load::http;

/// Jobs submitted.
pub(crate) const JOBS: usize = 1_000;
/// The two sandbox fixtures' transactions.
const FIXTURE_TX: [&str; 2] = ["1000000042928567", "1000000181492557"];

fn fixture(n: u8) -> String {
    let path = format!(
        "{}/../receipts/tests/fixtures/apple-sandbox-receipt-{n}.b64",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A legacy sandbox receipt (as `quintet apple-sim` reads them) for `tx`.
fn synthetic(tx: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let info = b64(&format!(
        "{{\n\t\"transaction-id\" = \"{tx}\";\n\t\"product-id\" = \"coins\";\n}}"
    ));
    b64(&format!(
        "{{\n\t\"purchase-info\" = \"{info}\";\n\t\"environment\" = \"Sandbox\";\n}}"
    ))
}

/// Job `i`'s transaction: the two fixtures, 798 new transactions, then
/// 200 duplicates (of the fixtures and of earlier jobs' transactions).
fn transaction(i: usize, run: u32) -> String {
    match i {
        0 | 1 => FIXTURE_TX[i].to_owned(),
        2..800 => format!("5{run:05}{i:06}"),
        800..850 => FIXTURE_TX[i % 2].to_owned(),
        _ => format!("5{run:05}{:06}", (i - 850) * 3 + 2),
    }
}

fn receipt(i: usize, run: u32) -> String {
    match i {
        0 | 800..850 if i.is_multiple_of(2) => fixture(1),
        1 | 800..850 => fixture(2),
        _ => synthetic(&transaction(i, run)),
    }
}

/// Submits the jobs through the load balancer, 8 at a time; a submission
/// that is not accepted (the kill) is sent again. Returns how many were
/// refused along the way.
pub(crate) async fn submit(url: &str, results_queue: &str, run: u32) -> u64 {
    let client = http();
    let mut refused = 0;
    let mut pending: Vec<usize> = (0..JOBS).collect();
    while !pending.is_empty() {
        let batch: Vec<usize> = pending.drain(..pending.len().min(8)).collect();
        let mut calls = tokio::task::JoinSet::new();
        for i in batch {
            let client = client.clone();
            let body =
                json!({ "receipt": receipt(i, run), "user_id": i, "post_queue": results_queue });
            let url = format!("{url}/receipts/jobs");
            calls.spawn(async move {
                let accepted = client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 202);
                (i, accepted)
            });
        }
        while let Some(done) = calls.join_next().await {
            let (i, accepted) = done.expect("submit task");
            if !accepted {
                refused += 1;
                pending.push(i);
            }
        }
    }
    refused
}

/// What the receipts part saw.
pub(crate) struct Outcome {
    pub(crate) results: usize,
    pub(crate) duplicate_results: usize,
    pub(crate) ok: usize,
    pub(crate) invalid: usize,
    pub(crate) transactions: usize,
    pub(crate) ledger_items: usize,
    pub(crate) dead_letters: u64,
    pub(crate) drained_after: Duration,
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str, deadline: Instant) -> String {
    loop {
        match sqs.get_queue_url().queue_name(name).send().await {
            Ok(out) => return out.queue_url().expect("url").to_owned(),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "queue {name} never appeared: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    attrs.attributes().map_or(0, |a| {
        a.values().map(|v| v.parse::<u64>().unwrap_or(0)).sum()
    })
}

/// Reads every result from SQS (until each job has one), then checks the
/// ledger and the queues.
pub(crate) async fn check(
    moto: &str,
    queues: (&str, &str, &str),
    table: &str,
    run: u32,
    started: Instant,
) -> Outcome {
    let (input, dead, results) = queues;
    let config = platform::aws::sdk_config(&platform::aws::AwsSettings::moto(moto)).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let deadline = Instant::now() + Duration::from_mins(2);
    let results_url = queue_url(&sqs, results, deadline).await;
    let mut by_job: HashMap<u64, Vec<Value>> = HashMap::new();
    let mut total = 0;
    while by_job.len() < JOBS {
        assert!(
            Instant::now() < deadline,
            "only {} of {JOBS} jobs have a result after 120 s",
            by_job.len()
        );
        let out = sqs
            .receive_message()
            .queue_url(&results_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive results");
        for message in out.messages() {
            let body: Value =
                serde_json::from_str(message.body().expect("body")).expect("a JSON result");
            let job = body["user_id"].as_u64().expect("user_id is the job number");
            by_job.entry(job).or_default().push(body);
            total += 1;
            sqs.delete_message()
                .queue_url(&results_url)
                .receipt_handle(message.receipt_handle().expect("handle"))
                .send()
                .await
                .expect("delete result");
        }
    }
    let drained_after = started.elapsed();

    // Per transaction: the OK results all come from one job, the ledger's.
    let mut ok_job: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    let (mut ok, mut invalid) = (0, 0);
    for (job, answers) in &by_job {
        let expected_tx = transaction(usize::try_from(*job).expect("job"), run);
        for answer in answers {
            assert_eq!(answer["transaction_id"], expected_tx.as_str(), "{answer}");
            match answer["status"].as_str() {
                Some("OK") => {
                    ok += 1;
                    ok_job.entry(expected_tx.clone()).or_default().insert(*job);
                }
                Some("INVALID") => invalid += 1,
                other => panic!("job {job}: status {other:?}"),
            }
        }
    }
    let transactions: HashSet<String> = (0..JOBS).map(|i| transaction(i, run)).collect();
    for tx in &transactions {
        let jobs = ok_job.get(tx).map_or(0, HashSet::len);
        assert_eq!(jobs, 1, "transaction {tx} validated OK by exactly one job");
    }

    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let mut ledger: HashMap<String, u64> = HashMap::new();
    let mut start = None;
    loop {
        let page = dynamo
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan ledger");
        for item in page.items() {
            let tx = match item.get("TransactionId") {
                Some(AttributeValue::S(tx)) => tx.clone(),
                other => panic!("ledger item without transaction_id: {other:?}"),
            };
            let user = match item.get("UserId") {
                Some(AttributeValue::N(n)) => n.parse().expect("user_id"),
                other => panic!("ledger user_id: {other:?}"),
            };
            assert!(
                ledger.insert(tx, user).is_none(),
                "one item per transaction"
            );
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    assert_eq!(
        ledger.len(),
        transactions.len(),
        "each transaction claimed once"
    );
    for (tx, user) in &ledger {
        assert!(
            ok_job.get(tx).is_some_and(|jobs| jobs.contains(user)),
            "the ledger's claimant of {tx} (job {user}) is the job answered OK"
        );
    }

    let input_url = queue_url(&sqs, input, deadline).await;
    let dead_url = queue_url(&sqs, dead, deadline).await;
    // The last deletes of the input queue follow the results by moments.
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while depth(&sqs, &input_url).await > 0 {
        assert!(
            Instant::now() < drain_deadline,
            "the input queue was not drained"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Outcome {
        results: total,
        duplicate_results: total - by_job.len(),
        ok,
        invalid,
        transactions: transactions.len(),
        ledger_items: ledger.len(),
        dead_letters: depth(&sqs, &dead_url).await,
        drained_after,
    }
}
