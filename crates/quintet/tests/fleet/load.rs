//! The mixed load, through the load balancer only: messages and counters
//! over HTTP/1.1, kv and calc over gRPC, and kv over its raw-TCP protocol
//! (the seed's, through nginx's stream proxy). Every answer is recorded: what was
//! acknowledged must be there afterwards; what failed is counted (with
//! when), and a counter increment that failed may or may not have counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use calc::proto::v1::AddRequest;
use calc::proto::v1::calculator_client::CalculatorClient;
use kv::proto::seed;
use kv::proto::v1::SetRequest;
use kv::proto::v1::key_value_client::KeyValueClient;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// Tasks per service.
pub(crate) const TASKS: usize = 3;
/// Distinct counter keys.
pub(crate) const COUNTER_KEYS: usize = 16;

/// A request that got no acknowledgement.
pub(crate) struct Failure {
    pub(crate) at: Instant,
    pub(crate) service: &'static str,
    pub(crate) what: String,
}

/// What the load was told, by service.
#[derive(Default)]
pub(crate) struct Acked {
    /// (digest, text) of every message answered 201 or 200.
    pub(crate) messages: Mutex<Vec<(String, String)>>,
    /// Sum of acknowledged increments per key.
    pub(crate) counters: Mutex<HashMap<String, i64>>,
    /// Sum of increments per key that failed (they may have counted).
    pub(crate) counters_uncertain: Mutex<HashMap<String, i64>>,
    pub(crate) increments: Mutex<u64>,
    /// (key, value) of every acknowledged kv set (each key written once).
    pub(crate) kv: Mutex<Vec<(String, Vec<u8>)>>,
    /// How many of those went over the raw-TCP protocol.
    pub(crate) kv_tcp: Mutex<u64>,
    /// (a, b, answered at) of every answered Add.
    pub(crate) calc: Mutex<Vec<(i64, i64, Instant)>>,
    pub(crate) failures: Mutex<Vec<Failure>>,
}

impl Acked {
    fn failed(&self, service: &'static str, what: String) {
        lock(&self.failures).push(Failure {
            at: Instant::now(),
            service,
            what,
        });
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("lock")
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub(crate) async fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect")
}

/// A value of `i`'s own length and bytes.
pub(crate) fn kv_value(task: usize, i: usize) -> Vec<u8> {
    let len = (i * 97 + task * 13) % 6000 + 1;
    (0..len)
        .map(|n| ((n * 31 + i + task) % 251) as u8)
        .collect()
}

/// Runs every service's tasks against `http_url` and `grpc_url` until `until`.
pub(crate) async fn run(
    acked: std::sync::Arc<Acked>,
    http_url: String,
    grpc_url: String,
    tcp_addr: String,
    until: Instant,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let (a, addr) = (acked.clone(), tcp_addr);
    tasks.spawn(async move { kv_tcp_sets(&a, &addr, until).await });
    for task in 0..TASKS {
        let (a, url) = (acked.clone(), http_url.clone());
        tasks.spawn(async move { messages(&a, &url, task, until).await });
        let (a, url) = (acked.clone(), http_url.clone());
        tasks.spawn(async move { counters(&a, &url, task, until).await });
        let (a, url) = (acked.clone(), grpc_url.clone());
        tasks.spawn(async move { kv_sets(&a, &url, task, until).await });
        let (a, url) = (acked.clone(), grpc_url.clone());
        tasks.spawn(async move { calc_adds(&a, &url, task, until).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("load task");
    }
}

async fn messages(acked: &Acked, url: &str, task: usize, until: Instant) {
    let client = http();
    let mut i = 0;
    while Instant::now() < until {
        i += 1;
        let text = format!("fleet message {task}-{i}");
        let answer = client
            .post(format!("{url}/messages"))
            .json(&json!({ "message": text }))
            .send()
            .await;
        match answer {
            Ok(r) if r.status().as_u16() == 201 || r.status().as_u16() == 200 => {
                let body: Value = r.json().await.expect("json");
                let digest = body["digest"].as_str().expect("digest").to_owned();
                lock(&acked.messages).push((digest, text));
            }
            Ok(r) => acked.failed("messages", format!("POST /messages: {}", r.status())),
            Err(e) => acked.failed("messages", format!("POST /messages: {e}")),
        }
    }
}

async fn counters(acked: &Acked, url: &str, task: usize, until: Instant) {
    let client = http();
    let mut i = 0;
    while Instant::now() < until {
        i += 1;
        let key = format!("fleet-counter-{}", (i + task) % COUNTER_KEYS);
        let value = (i % 5 + 1) as i64;
        let answer = client
            .post(format!("{url}/increment"))
            .json(&json!({ "key": key, "value": value }))
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {
                *lock(&acked.counters).entry(key).or_default() += value;
                *lock(&acked.increments) += 1;
            }
            other => {
                *lock(&acked.counters_uncertain).entry(key).or_default() += value;
                let what = match other {
                    Ok(r) => r.status().to_string(),
                    Err(e) => e.to_string(),
                };
                acked.failed("counters", format!("POST /increment: {what}"));
            }
        }
    }
}

async fn kv_sets(acked: &Acked, url: &str, task: usize, until: Instant) {
    let mut client = KeyValueClient::new(channel(url).await);
    let mut i = 0;
    while Instant::now() < until {
        i += 1;
        let key = format!("fleet-kv-{task}-{i}");
        let value = kv_value(task, i);
        match client
            .set(SetRequest {
                key: key.clone(),
                value: value.clone(),
            })
            .await
        {
            Ok(_) => lock(&acked.kv).push((key, value)),
            Err(status) => acked.failed(
                "kv",
                format!("Set: {:?} {}", status.code(), status.message()),
            ),
        }
    }
}

async fn calc_adds(acked: &Acked, url: &str, task: usize, until: Instant) {
    let mut client = CalculatorClient::new(channel(url).await);
    let mut i: i64 = 0;
    let b = 7_000 + task as i64;
    while Instant::now() < until {
        i += 1;
        match client.add(AddRequest { a: i, b }).await {
            Ok(answer) => {
                assert_eq!(answer.into_inner().result, i + b, "calc answers right");
                lock(&acked.calc).push((i, b, Instant::now()));
            }
            Err(status) => acked.failed(
                "calc",
                format!("Add: {:?} {}", status.code(), status.message()),
            ),
        }
    }
}

/// One connection speaking the seed's raw-TCP protocol: a protobuf
/// `req_envelope` each way, no length prefix.
pub(crate) struct SeedConn {
    stream: TcpStream,
}

impl SeedConn {
    pub(crate) async fn connect(addr: &str) -> Result<Self, String> {
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: timed out"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        Ok(Self { stream })
    }

    /// Sends `request` and reads until a whole envelope with `done` decodes.
    async fn call(
        &mut self,
        request: &seed::ReqEnvelope,
        done: impl Fn(&seed::ReqEnvelope) -> bool,
    ) -> Result<seed::ReqEnvelope, String> {
        self.stream
            .write_all(&request.encode_to_vec())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut reply = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                .await
                .map_err(|_| "no reply in 10 s".to_owned())?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed before a whole reply".to_owned());
            }
            reply.extend_from_slice(&buf[..n]);
            if let Ok(envelope) = seed::ReqEnvelope::decode(&reply[..])
                && done(&envelope)
            {
                return Ok(envelope);
            }
        }
    }

    pub(crate) async fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let request = seed::ReqEnvelope {
            r#type: seed::req_envelope::MsgType::SetRequestT as i32,
            set_req: Some(seed::SetRequest {
                req: seed::Data {
                    key: key.to_owned(),
                    value: value.to_owned(),
                },
            }),
            ..seed::ReqEnvelope::default()
        };
        let reply = self.call(&request, |e| e.set_resp.is_some()).await?;
        match reply.set_resp.map(|r| r.error) {
            Some(e) if e == seed::set_response::ErrorT::Ok as i32 => Ok(()),
            other => Err(format!("set answered {other:?}")),
        }
    }

    /// The value of `key`, or `None` when it is not found.
    pub(crate) async fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        let request = seed::ReqEnvelope {
            r#type: seed::req_envelope::MsgType::GetRequestT as i32,
            get_req: Some(seed::GetRequest {
                key: key.to_owned(),
            }),
            ..seed::ReqEnvelope::default()
        };
        let reply = self.call(&request, |e| e.get_resp.is_some()).await?;
        let resp = reply.get_resp.ok_or("no get_resp")?;
        match resp.error {
            e if e == seed::get_response::ErrorT::Ok as i32 => {
                Ok(Some(resp.req.map(|d| d.value).unwrap_or_default()))
            }
            e if e == seed::get_response::ErrorT::NotFound as i32 => Ok(None),
            e => Err(format!("get answered {e}")),
        }
    }
}

/// A text value of `i`'s own length (the seed's values are strings).
pub(crate) fn kv_text(i: usize) -> String {
    let len = (i * 89) % 5000 + 1;
    (0..len)
        .map(|n| char::from(b'a' + ((n + i) % 26) as u8))
        .collect()
}

/// kv sets over the raw-TCP protocol, many per connection; a failed one
/// is counted and the next goes over a new connection (which nginx gives
/// a live replica).
async fn kv_tcp_sets(acked: &Acked, addr: &str, until: Instant) {
    let mut conn: Option<SeedConn> = None;
    let mut i = 0;
    while Instant::now() < until {
        i += 1;
        let key = format!("fleet-kv-tcp-{i}");
        let value = kv_text(i);
        let result = match conn.as_mut() {
            Some(c) => c.set(&key, &value).await,
            None => match SeedConn::connect(addr).await {
                Ok(c) => conn.insert(c).set(&key, &value).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                lock(&acked.kv).push((key, value.into_bytes()));
                *lock(&acked.kv_tcp) += 1;
            }
            Err(e) => {
                conn = None;
                acked.failed("kv-tcp", format!("raw-TCP set: {e}"));
            }
        }
    }
}
