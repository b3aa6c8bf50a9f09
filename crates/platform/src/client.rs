//! What every service's command-line client shares: where the server is, how
//! to authenticate and trust it, and how to turn its answers into output and
//! exit codes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use secrecy::{ExposeSecret, SecretString};

/// Connection options of every client subcommand.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the quintet server.
    #[arg(
        long,
        env = "QUINTET_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,

    /// Bearer token to present.
    #[arg(long, env = "QUINTET_TOKEN", hide_env_values = true, global = true, value_parser = crate::config::parse_secret)]
    pub token: Option<SecretString>,

    /// PEM certificate to trust for HTTPS (e.g. the server's `data/tls/cert.pem`).
    #[arg(long, env = "QUINTET_CA_CERT", global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Skip HTTPS certificate verification (local testing only).
    #[arg(long, global = true)]
    pub insecure: bool,

    /// Time to wait for the server's answer.
    #[arg(long, env = "QUINTET_CLIENT_TIMEOUT", value_parser = crate::config::parse_duration, default_value = "30s", global = true)]
    pub timeout: Duration,
}

/// An HTTP client bound to one server.
pub struct HttpClient {
    http: reqwest::Client,
    base: String,
    token: Option<SecretString>,
}

impl ClientArgs {
    /// The bearer token to present, exposed for the one header it goes in.
    pub fn bearer_token(&self) -> Option<&str> {
        self.token.as_ref().map(ExposeSecret::expose_secret)
    }

    /// A client for `--url` with these options: its timeout, the trusted
    /// `--ca-cert`, `--insecure`; fails on a URL that is not `http(s)://host…`.
    pub fn http(&self) -> anyhow::Result<HttpClient> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .use_rustls_tls()
            .user_agent(concat!("quintet/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).with_context(|| {
                format!("--ca-cert {} is not a PEM certificate", path.display())
            })?;
            builder = builder.add_root_certificate(cert);
        }
        if self.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let url = reqwest::Url::parse(&self.url)
            .with_context(|| format!("--url '{}' is not a URL", self.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            bail!(
                "--url must start with http:// or https:// (got '{}')",
                self.url
            );
        }
        let base = url.as_str().trim_end_matches('/').to_owned();
        Ok(HttpClient {
            http: builder.build().context("building the HTTP client")?,
            base,
            token: self.token.clone(),
        })
    }
}

impl HttpClient {
    /// A request to `path` (relative to the base URL), with the token attached.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token.expose_secret()),
            None => builder,
        }
    }

    /// A request to the path made of `segments`, each percent-encoded as one segment.
    pub fn request_segments(
        &self,
        method: reqwest::Method,
        segments: &[&str],
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let mut url = reqwest::Url::parse(&self.base)
            .with_context(|| format!("--url '{}' is not a URL", self.base))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--url '{}' cannot take a path", self.base))?
            .pop_if_empty()
            .extend(segments);
        let builder = self.http.request(method, url);
        Ok(match &self.token {
            Some(token) => builder.bearer_auth(token.expose_secret()),
            None => builder,
        })
    }

    /// Sends a request; a success's JSON body is returned, a failure becomes an
    /// error carrying the status and the server's `error` message.
    pub async fn send_json(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<serde_json::Value> {
        let body = self.send(request).await?;
        serde_json::from_slice(&body).context("the server's answer is not JSON")
    }

    /// Sends a request; a success's body is returned as bytes, a failure
    /// becomes an error carrying the status and the server's `error` message.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<bytes::Bytes> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("reading the server's answer")?;
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{status}: {message}")
    }
}

/// The query of a paged listing: only the parameters that were given.
pub fn page_query(
    prefix: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Vec<(&'static str, String)> {
    [
        prefix.map(|p| ("prefix", p)),
        limit.map(|l| ("limit", l.to_string())),
        cursor.map(|c| ("cursor", c)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Prints a JSON value the way every client subcommand does: pretty, one document.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A command-line value: the text itself, `@path` for a file's bytes, or `-` for stdin.
pub fn value_arg(value: &str) -> anyhow::Result<Vec<u8>> {
    if value == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("reading the value from stdin")?;
        return Ok(bytes);
    }
    if let Some(path) = value.strip_prefix('@') {
        return std::fs::read(path).with_context(|| format!("reading the value from {path}"));
    }
    Ok(value.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    fn parse(args: &[&str]) -> ClientArgs {
        let mut all = vec!["quintet"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").client
    }

    #[test]
    fn debug_of_the_client_options_shows_no_token() {
        let args = parse(&["--token", "cl1entsecret"]);
        let shown = format!("{args:?}");
        assert!(!shown.contains("cl1entsecret"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[test]
    fn the_url_must_be_http_or_https_with_a_host() {
        assert!(parse(&["--url", "http://127.0.0.1:8080/"]).http().is_ok());
        for bad in ["ftp://x", "127.0.0.1:8080", "http://", "not a url"] {
            assert!(parse(&["--url", bad]).http().is_err(), "{bad}");
        }
    }
}
