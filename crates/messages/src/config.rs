//! The messages service's options (`quintet serve` flags and their
//! `QUINTET_…` environment variables).

/// Messages service options.
#[derive(Debug, Clone, clap::Args)]
pub struct MessagesConfig {
    /// Largest message accepted, in bytes of UTF-8 text; larger ones get 413.
    #[arg(long, env = "QUINTET_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_message_bytes: usize,
}
