//! The ingress's settings: one typed tree, each field bound to one environment variable.

use std::net::SocketAddr;

use clap::Parser;
use letterbox::env;
use letterbox::settings::{BrokerSettings, DEFAULT_SHUTDOWN_GRACE_MS, VaultArgs};
use letterbox_vault::auth::TokenArgs;

/// letterbox-producer: the HTTP ingress. Checks and extracts documents in memory, publishes one
/// job per request to RabbitMQ and answers with the letter when a worker replies.
/// The environment-only variables, after the options in `--help`.
const PRODUCER_HELP: &str = concat!(
    letterbox::log_help!(),
    "\n  LETTERBOX_EXTRACTOR   the document extractor run for each upload (default: \
     letterbox-extract beside this binary)"
);

#[derive(Parser, Clone)]
#[command(name = "letterbox-producer", version, about, long_about = None, after_help = PRODUCER_HELP)]
pub struct ProducerSettings {
    /// Address the HTTP API listens on.
    #[arg(long, env = env::HTTP_ADDR, default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// PEM certificate chain: with `--tls-key`, the API is served over HTTPS only.
    #[arg(long, env = env::TLS_CERT, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of that certificate.
    #[arg(long, env = env::TLS_KEY, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Oldest TLS version accepted: 1.2 or 1.3 (1.3 is always preferred).
    #[arg(long, env = env::TLS_MIN_VERSION, default_value = "1.2", value_parser = ["1.2", "1.3"])]
    pub tls_min_version: String,

    #[command(flatten)]
    pub broker: BrokerSettings,

    #[command(flatten)]
    pub vault: VaultArgs,

    #[command(flatten)]
    pub tokens: TokenArgs,

    /// How long a request may take, end to end, in milliseconds.
    #[arg(long, env = env::JOB_TIMEOUT_MS, default_value_t = 30_000)]
    pub job_timeout_ms: u64,

    /// Largest uploaded document, in bytes.
    #[arg(long, env = env::MAX_UPLOAD_BYTES, default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Longest resume text after extraction, in characters.
    #[arg(long, env = env::MAX_RESUME_CHARS, default_value_t = 50_000)]
    pub max_resume_chars: usize,

    /// Longest job description, in characters.
    #[arg(long, env = env::MAX_JOB_DESCRIPTION_CHARS, default_value_t = 30_000)]
    pub max_job_description_chars: usize,

    /// Most requests waiting for a letter at once; more are answered 503.
    #[arg(long, env = env::MAX_WAITING, default_value_t = 5_000)]
    pub max_waiting: usize,

    /// Time a client may take to send its request headers, in milliseconds.
    #[arg(long, env = env::HEADER_TIMEOUT_MS, default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// Time allowed to in-flight requests after SIGTERM, in milliseconds.
    #[arg(long, env = env::SHUTDOWN_GRACE_MS, default_value_t = DEFAULT_SHUTDOWN_GRACE_MS)]
    pub shutdown_grace_ms: u64,

    /// Time between keep-alive comments on a streamed answer while no piece of the letter is
    /// sent, in milliseconds.
    #[arg(long, env = env::SSE_KEEPALIVE_MS, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub sse_keepalive_ms: u64,

    /// Serve the page for end users at `/`, with its session cookies.
    #[arg(long, env = env::WEB_PAGE, default_value_t = false, action = clap::ArgAction::Set)]
    pub web_page: bool,

    /// How long a page's session cookie may write letters, in seconds.
    #[arg(long, env = env::WEB_SESSION_TTL_SECS, default_value_t = 1_800, value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub web_session_ttl_secs: u64,

    /// Letters one page session may ask for (`N/s`, `N/min`, `N/h`).
    #[arg(long, env = env::WEB_RATE, default_value = "5/min")]
    pub web_rate: letterbox_vault::tokens::Rate,

    /// Letters all page sessions together may ask for.
    #[arg(long, env = env::WEB_TOTAL_RATE, default_value = "60/min")]
    pub web_total_rate: letterbox_vault::tokens::Rate,

    /// KV v2 path of the key that signs webhook deliveries (field `signing_key`).
    #[arg(long, env = env::WEBHOOK_KEY_PATH, default_value = "secret/letterbox/webhook")]
    pub webhook_key_path: String,

    /// Allow callback URLs on loopback, private and other internal addresses.
    #[arg(long, env = env::WEBHOOK_ALLOW_PRIVATE, default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// Delivery attempts of one webhook, the first included.
    #[arg(long, env = env::WEBHOOK_MAX_ATTEMPTS, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub webhook_max_attempts: u32,

    /// Time one webhook delivery attempt may take, in milliseconds.
    #[arg(long, env = env::WEBHOOK_TIMEOUT_MS, default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
}

impl ProducerSettings {
    /// The defaults, as if no option and no variable were given.
    pub fn defaults() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            tls_min_version: "1.2".to_owned(),
            broker: BrokerSettings::default(),
            vault: VaultArgs::default(),
            tokens: TokenArgs::default(),
            job_timeout_ms: 30_000,
            max_upload_bytes: 10 * 1024 * 1024,
            max_resume_chars: 50_000,
            max_job_description_chars: 30_000,
            sse_keepalive_ms: 5_000,
            web_page: false,
            web_session_ttl_secs: 1_800,
            web_rate: letterbox_vault::tokens::Rate {
                requests: 5,
                per_seconds: 60,
            },
            web_total_rate: letterbox_vault::tokens::Rate {
                requests: 60,
                per_seconds: 60,
            },
            webhook_key_path: "secret/letterbox/webhook".to_owned(),
            webhook_allow_private: false,
            webhook_max_attempts: 8,
            webhook_timeout_ms: 10_000,
            max_waiting: 5_000,
            header_timeout_ms: 10_000,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use letterbox::settings::{default_of, options_without_env};

    use super::*;

    #[test]
    fn defaults_match_the_command_line_defaults() {
        let command = ProducerSettings::command();
        let default = |id| default_of(&command, id).unwrap();
        let defaults = ProducerSettings::defaults();
        assert_eq!(default("http_addr"), defaults.http_addr.to_string());
        assert_eq!(
            default("job_timeout_ms"),
            defaults.job_timeout_ms.to_string()
        );
        assert_eq!(
            default("max_upload_bytes"),
            defaults.max_upload_bytes.to_string()
        );
        assert_eq!(
            default("max_resume_chars"),
            defaults.max_resume_chars.to_string()
        );
        assert_eq!(
            default("max_job_description_chars"),
            defaults.max_job_description_chars.to_string()
        );
        assert_eq!(default("max_waiting"), defaults.max_waiting.to_string());
        assert_eq!(
            default("header_timeout_ms"),
            defaults.header_timeout_ms.to_string()
        );
        assert_eq!(
            default("shutdown_grace_ms"),
            defaults.shutdown_grace_ms.to_string()
        );
        assert_eq!(default("jobs_queue"), defaults.broker.jobs_queue);
        assert_eq!(default("tokens_path"), defaults.tokens.tokens_path);
        assert_eq!(
            default("default_rate"),
            defaults.tokens.default_rate.to_string()
        );
        assert_eq!(
            default("token_refresh_secs"),
            defaults.tokens.token_refresh_secs.to_string()
        );
    }

    #[test]
    fn every_option_names_its_environment_variable() {
        assert_eq!(
            options_without_env(&ProducerSettings::command()),
            Vec::<String>::new()
        );
    }
}
