//! `quintet counters …`: the command-line client of the counters service.

use clap::{Args, Subcommand};
use http::Method;
use platform::client::{ClientArgs, page_query, print_json};

// clap turns doc comments into help text: a doc here would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct CountersCli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: CountersCommand,
}

#[derive(Debug, Subcommand)]
enum CountersCommand {
    /// Add VALUE (default 1) to KEY and print the new total.
    Incr {
        key: String,
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        value: i64,
    },
    /// Print KEY's total.
    Get { key: String },
    /// Print a page of counters in key order.
    List {
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Counters per page (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
        /// The `next` value of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// Runs one `quintet counters` command against a server and prints its answer.
pub async fn run(cli: CountersCli) -> anyhow::Result<()> {
    let client = cli.client.http()?;
    let answer = match cli.command {
        CountersCommand::Incr { key, value } => {
            let body = serde_json::json!({ "key": key, "value": value });
            client
                .send_json(client.request(Method::POST, "/increment").json(&body))
                .await?
        }
        CountersCommand::Get { key } => {
            client
                .send_json(client.request_segments(Method::GET, &["counters", &key])?)
                .await?
        }
        CountersCommand::List {
            prefix,
            limit,
            cursor,
        } => {
            let query = page_query(prefix, limit, cursor);
            client
                .send_json(client.request(Method::GET, "/counters").query(&query))
                .await?
        }
    };
    print_json(&answer)
}
