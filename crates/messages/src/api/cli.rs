//! `quintet messages …`: the command-line client of the messages service.

use std::io::Read;

use anyhow::Context;
use clap::{Args, Subcommand};
use http::Method;
use platform::client::{ClientArgs, print_json};

// clap turns doc comments into help text: a doc here would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct MessagesCli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: MessagesCommand,
}

#[derive(Debug, Subcommand)]
enum MessagesCommand {
    /// Store a message and print its digest. MESSAGE is the text, `@FILE` to read a file, or `-` for stdin.
    Post { message: String },
    /// Print the message with this digest.
    Get { digest: String },
    /// Print a page of messages, oldest first.
    List {
        /// Messages per page (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
        /// The `next` value of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// Reads the text a `post` argument names.
fn message_text(arg: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the message from stdin")?;
        Ok(text)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("cannot read message file {path}"))
    } else {
        Ok(arg.to_owned())
    }
}

/// Runs one `quintet messages` command against a server and prints its answer.
pub async fn run(cli: MessagesCli) -> anyhow::Result<()> {
    let client = cli.client.http()?;
    let answer = match cli.command {
        MessagesCommand::Post { message } => {
            let text = message_text(&message)?;
            let body = serde_json::json!({ "message": text });
            client
                .send_json(client.request(Method::POST, "/messages").json(&body))
                .await?
        }
        MessagesCommand::Get { digest } => {
            client
                .send_json(client.request_segments(Method::GET, &["messages", &digest])?)
                .await?
        }
        MessagesCommand::List { limit, cursor } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(limit) = limit {
                query.push(("limit", limit.to_string()));
            }
            if let Some(cursor) = cursor {
                query.push(("cursor", cursor));
            }
            client
                .send_json(client.request(Method::GET, "/messages").query(&query))
                .await?
        }
    };
    print_json(&answer)
}
