//! `quintet receipts …` and `quintet queue …`: command-line clients of the
//! receipts service (over REST), a way in and out of the embedded queue.

use clap::{Args, Subcommand};
use platform::client::{ClientArgs, print_json, value_arg};
use reqwest::Method;

use crate::domain::{UserId, UserIdError};

fn parse_user_id(text: &str) -> Result<UserId, UserIdError> {
    UserId::from_cli(text)
}

/// `quintet receipts …`: the receipts service's REST client.
#[derive(Debug, Args)]
pub struct ReceiptsCli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ReceiptsCommand,
}

#[derive(Debug, Subcommand)]
enum ReceiptsCommand {
    /// Queue a validation job; prints its message id.
    Submit {
        /// The receipt: base64 text, `@path` for a file's content, or `-` for stdin.
        #[arg(long)]
        receipt: String,
        /// The user: an integer, or a string (a value that is not an integer is sent as a string;
        /// quote it as JSON, '"42"', to send digits as a string).
        #[arg(long, value_parser = parse_user_id, allow_hyphen_values = true)]
        user_id: UserId,
        /// The queue the results go to (created if the queue engine creates queues).
        #[arg(long)]
        post_queue: String,
    },
}

/// `quintet queue …`: read and write the service's queues over REST.
#[derive(Debug, Args)]
pub struct QueueCli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Receive messages from QUEUE and print them; they are deleted unless --keep.
    Receive {
        queue: String,
        /// Most messages (1..=10).
        #[arg(long, default_value_t = 10)]
        max: usize,
        /// Wait up to this long for a first message (long polling; at most 20s).
        #[arg(long, value_parser = platform::config::parse_duration, default_value = "0s")]
        wait: std::time::Duration,
        /// Leave them on the queue (visible again after 30 s).
        #[arg(long)]
        keep: bool,
    },
    /// Send BODY (text, `@path` or `-`) to QUEUE as is.
    Send { queue: String, body: String },
}

/// Runs a `quintet receipts` command.
pub async fn run_receipts(cli: ReceiptsCli) -> anyhow::Result<()> {
    let client = cli.client.http()?;
    match cli.command {
        ReceiptsCommand::Submit {
            receipt,
            user_id,
            post_queue,
        } => {
            let receipt = String::from_utf8(value_arg(&receipt)?)
                .map_err(|_| anyhow::anyhow!("--receipt: not UTF-8 text (base64 or a JWS)"))?;
            let job = serde_json::json!({
                "receipt": receipt.trim(),
                "user_id": user_id,
                "post_queue": post_queue,
            });
            let sent = client
                .send_json(client.request(Method::POST, "/receipts/jobs").json(&job))
                .await?;
            print_json(&sent)?;
        }
    }
    Ok(())
}

/// Runs a `quintet queue` command.
pub async fn run_queue(cli: QueueCli) -> anyhow::Result<()> {
    let client = cli.client.http()?;
    match cli.command {
        QueueCommand::Receive {
            queue,
            max,
            wait,
            keep,
        } => {
            let query = [
                ("max", max.to_string()),
                ("wait_ms", wait.as_millis().to_string()),
            ];
            let received = client
                .send_json(
                    client
                        .request_segments(Method::POST, &["queues", &queue, "receive"])?
                        .query(&query),
                )
                .await?;
            let messages = received["messages"].as_array().cloned().unwrap_or_default();
            let handles: Vec<&str> = messages
                .iter()
                .filter_map(|m| m["handle"].as_str())
                .collect();
            if !keep && !handles.is_empty() {
                client
                    .send_json(
                        client
                            .request_segments(Method::POST, &["queues", &queue, "delete"])?
                            .json(&serde_json::json!({ "handles": handles })),
                    )
                    .await?;
            }
            // Bodies that are JSON (jobs, results) print as JSON.
            let shown: Vec<serde_json::Value> = messages
                .iter()
                .map(|m| {
                    let body = m["body"].as_str().unwrap_or_default();
                    serde_json::json!({
                        "message_id": m["message_id"],
                        "receive_count": m["receive_count"],
                        "reason": m["reason"],
                        "body": serde_json::from_str::<serde_json::Value>(body)
                            .unwrap_or_else(|_| body.into()),
                    })
                })
                .collect();
            print_json(&serde_json::json!({ "messages": shown }))?;
        }
        QueueCommand::Send { queue, body } => {
            let sent = client
                .send_json(
                    client
                        .request_segments(Method::POST, &["queues", &queue, "messages"])?
                        .body(value_arg(&body)?),
                )
                .await?;
            print_json(&sent)?;
        }
    }
    Ok(())
}
