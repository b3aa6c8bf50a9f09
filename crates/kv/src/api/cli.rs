//! `quintet kv …`: the command-line client of the kv service (over REST).

use std::io::Write;

use clap::{Args, Subcommand};
use http::Method;
use platform::client::{ClientArgs, page_query, print_json, value_arg};

// clap turns doc comments into help text: a doc here would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct KvCli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Store VALUE under KEY: the text itself, `@path` for a file's bytes, or `-` for stdin.
    Set { key: String, value: String },
    /// Write KEY's value, raw, to stdout.
    Get { key: String },
    /// Remove KEY.
    Del { key: String },
    /// Print a page of keys (with value sizes) in key order.
    List {
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Keys per page (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Re-wrap every stored data key under the key provider's current key (the local
    /// provider makes a new master key first); print what was done. Each record keeps its
    /// layout unless --convert names one.
    Rotate {
        /// Re-encrypt records in another layout into this one: `quintet`, or `seed` (the
        /// original services' `DynamoDB` layout, for a migration back; `DynamoDB` store only).
        #[arg(long, value_parser = ["quintet", "seed"])]
        convert: Option<String>,
    },
}

/// Runs one `quintet kv …` command against a server and prints its answer.
pub async fn run(cli: KvCli) -> anyhow::Result<()> {
    let client = cli.client.http()?;
    match cli.command {
        KvCommand::Set { key, value } => {
            let body = value_arg(&value)?;
            client
                .send(
                    client
                        .request_segments(Method::PUT, &["kv", &key])?
                        .header("content-type", "application/octet-stream")
                        .body(body),
                )
                .await?;
        }
        KvCommand::Get { key } => {
            let value = client
                .send(client.request_segments(Method::GET, &["kv", &key])?)
                .await?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&value)?;
            stdout.flush()?;
        }
        KvCommand::Del { key } => {
            client
                .send(client.request_segments(Method::DELETE, &["kv", &key])?)
                .await?;
        }
        KvCommand::List {
            prefix,
            limit,
            cursor,
        } => {
            let query = page_query(prefix, limit, cursor);
            let page = client
                .send_json(client.request(Method::GET, "/kv").query(&query))
                .await?;
            print_json(&page)?;
        }
        KvCommand::Rotate { convert } => {
            let mut request = client.request(Method::POST, "/admin/kv/rotate");
            if let Some(format) = &convert {
                request = request.query(&[("convert", format)]);
            }
            let report = client.send_json(request).await?;
            print_json(&report)?;
        }
    }
    Ok(())
}
