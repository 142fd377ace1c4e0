//! The worker's settings: one typed tree, each field bound to one environment variable.

use std::net::SocketAddr;

use clap::Parser;
use letterbox::env;
use letterbox::settings::{BrokerSettings, DEFAULT_SHUTDOWN_GRACE_MS, VaultArgs};
use letterbox_vault::auth::TokenArgs;
pub const DEFAULT_LLM_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_LLM_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_LLM_KEY_PATH: &str = "secret/letterbox/llm";

/// letterbox-consumer: a worker. Takes jobs from RabbitMQ, reads the LLM key from Vault, asks
/// the LLM for the letter and publishes the reply. Run as many as the load needs.
#[derive(Parser, Clone)]
#[command(name = "letterbox-consumer", version, about, long_about = None, after_help = letterbox::telemetry::LOG_HELP)]
pub struct ConsumerSettings {
    /// Address of this worker's /healthz and /metrics.
    #[arg(long, env = env::METRICS_ADDR, default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,

    #[command(flatten)]
    pub broker: BrokerSettings,

    /// Jobs this worker runs at once at most (and its prefetch).
    #[arg(long, env = env::CONCURRENCY, default_value_t = 32)]
    pub concurrency: u16,

    /// Lower the number of jobs run at once when the LLM provider answers 429, and raise it
    /// back as calls succeed (`true` or `false`).
    #[arg(long, env = env::ADAPTIVE_CONCURRENCY, default_value_t = true, action = clap::ArgAction::Set)]
    pub adaptive_concurrency: bool,

    /// Base URL of an OpenAI-compatible API.
    #[arg(long, env = env::LLM_BASE_URL, default_value = DEFAULT_LLM_BASE_URL)]
    pub llm_base_url: String,

    /// Model name sent to the provider.
    #[arg(long, env = env::LLM_MODEL, default_value = DEFAULT_LLM_MODEL)]
    pub llm_model: String,

    /// Longest wait for one LLM answer, in milliseconds (the job's deadline may cut it shorter).
    #[arg(long, env = env::LLM_TIMEOUT_MS, default_value_t = 60_000)]
    pub llm_timeout_ms: u64,

    /// Ask the provider to stream its answer (`true`) or to send it whole (`false`). Both detect
    /// an answer cut short; a whole answer costs the worker (and the provider) one read instead
    /// of one per token, and the client receives the letter whole either way.
    #[arg(long, env = env::LLM_STREAM, default_value_t = false, action = clap::ArgAction::Set)]
    pub llm_stream: bool,

    /// Attempts at the LLM per job, the first included: 429, 5xx, timeouts and broken streams
    /// are tried again with backoff (never past the job's deadline).
    #[arg(long, env = env::LLM_MAX_ATTEMPTS, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub llm_max_attempts: u32,

    /// The broker's consumer timeout (RabbitMQ's `consumer_timeout`, 30 min by default), in
    /// milliseconds: a job is given up a minute before it, so its delivery is never taken back
    /// while a worker still works on it.
    #[arg(long, env = env::BROKER_ACK_TIMEOUT_MS, default_value_t = 1_800_000, value_parser = clap::value_parser!(u64).range(120_000..))]
    pub broker_ack_timeout_ms: u64,

    /// KV v2 path of the LLM API key in Vault.
    #[arg(long, env = env::LLM_KEY_PATH, default_value = DEFAULT_LLM_KEY_PATH)]
    pub llm_key_path: String,

    /// Field of that secret holding the key.
    #[arg(long, env = env::LLM_KEY_FIELD, default_value = "api_key")]
    pub llm_key_field: String,

    /// Seconds a key read from Vault is reused before Vault is asked again.
    #[arg(long, env = env::SECRET_CACHE_TTL_SECS, default_value_t = 300)]
    pub secret_cache_ttl_secs: u64,

    /// While Vault is unreachable or sealed, how long the key read earlier keeps serving
    /// (`30m`, `1h`, `0s` for never).
    #[arg(long, env = env::SECRET_MAX_STALENESS, default_value = "1h", value_parser = humantime::parse_duration)]
    pub secret_max_staleness: std::time::Duration,

    /// Version of the prompt templates.
    #[arg(long, env = env::PROMPT_VERSION, default_value = "v2")]
    pub prompt_version: String,

    #[command(flatten)]
    pub vault: VaultArgs,

    /// Tokens guard the worker's /metrics too (it loads monitor and admin tokens only).
    #[command(flatten)]
    pub tokens: TokenArgs,

    /// Time allowed to in-flight jobs after SIGTERM, in milliseconds.
    #[arg(long, env = env::SHUTDOWN_GRACE_MS, default_value_t = DEFAULT_SHUTDOWN_GRACE_MS)]
    pub shutdown_grace_ms: u64,
}

impl ConsumerSettings {
    /// The defaults, as if no option and no variable were given.
    pub fn defaults() -> Self {
        Self {
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            broker: BrokerSettings::default(),
            concurrency: 32,
            adaptive_concurrency: true,
            llm_base_url: DEFAULT_LLM_BASE_URL.to_owned(),
            llm_model: DEFAULT_LLM_MODEL.to_owned(),
            llm_timeout_ms: 60_000,
            llm_stream: false,
            llm_max_attempts: 4,
            broker_ack_timeout_ms: 1_800_000,
            llm_key_path: DEFAULT_LLM_KEY_PATH.to_owned(),
            llm_key_field: "api_key".to_owned(),
            secret_cache_ttl_secs: 300,
            secret_max_staleness: std::time::Duration::from_secs(3600),
            prompt_version: "v2".to_owned(),
            vault: VaultArgs::default(),
            tokens: TokenArgs::default(),
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
        let command = ConsumerSettings::command();
        let default = |id| default_of(&command, id).unwrap();
        let defaults = ConsumerSettings::defaults();
        assert_eq!(default("metrics_addr"), defaults.metrics_addr.to_string());
        assert_eq!(default("concurrency"), defaults.concurrency.to_string());
        assert_eq!(
            default("adaptive_concurrency"),
            defaults.adaptive_concurrency.to_string()
        );
        assert_eq!(default("llm_base_url"), defaults.llm_base_url);
        assert_eq!(default("llm_model"), defaults.llm_model);
        assert_eq!(
            default("llm_timeout_ms"),
            defaults.llm_timeout_ms.to_string()
        );
        assert_eq!(default("llm_key_path"), defaults.llm_key_path);
        assert_eq!(default("llm_key_field"), defaults.llm_key_field);
        assert_eq!(
            default("secret_cache_ttl_secs"),
            defaults.secret_cache_ttl_secs.to_string()
        );
        assert_eq!(default("llm_stream"), defaults.llm_stream.to_string());
        assert_eq!(
            default("llm_max_attempts"),
            defaults.llm_max_attempts.to_string()
        );
        assert_eq!(
            default("broker_ack_timeout_ms"),
            defaults.broker_ack_timeout_ms.to_string()
        );
        assert_eq!(
            humantime::parse_duration(&default("secret_max_staleness")).unwrap(),
            defaults.secret_max_staleness
        );
        assert_eq!(default("prompt_version"), defaults.prompt_version);
        assert_eq!(
            default("shutdown_grace_ms"),
            defaults.shutdown_grace_ms.to_string()
        );
        assert_eq!(default("jobs_queue"), defaults.broker.jobs_queue);
    }

    #[test]
    fn adaptive_concurrency_is_switched_off_with_false() {
        let settings = ConsumerSettings::try_parse_from([
            "letterbox-consumer",
            "--adaptive-concurrency",
            "false",
        ])
        .unwrap();
        assert!(!settings.adaptive_concurrency);
    }

    #[test]
    fn every_option_names_its_environment_variable() {
        assert_eq!(
            options_without_env(&ConsumerSettings::command()),
            Vec::<String>::new()
        );
    }
}
