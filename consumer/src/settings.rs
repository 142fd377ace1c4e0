//! The worker's settings: one typed tree, each field bound to one environment variable.

use std::net::SocketAddr;

use clap::Parser;
use letterbox::env;
use letterbox::settings::{BrokerSettings, DEFAULT_SHUTDOWN_GRACE_MS, VaultArgs};
use letterbox_vault::auth::TokenArgs;

use crate::llm::LlmProvider;

/// The model asked of an OpenAI-compatible provider when `LLM_MODEL` names none (an Anthropic
/// provider has no default: its model must be named).
pub const DEFAULT_LLM_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_LLM_KEY_PATH: &str = "secret/letterbox/llm";

/// letterbox-consumer: a worker. Takes jobs from RabbitMQ, reads the LLM key from Vault, asks
/// the LLM for the letter and publishes the reply. Run as many as the load needs.
#[derive(Parser, Clone)]
#[command(name = "letterbox-consumer", version, about, long_about = None, after_help = letterbox::telemetry::LOG_HELP)]
pub struct ConsumerSettings {
    /// Address of this worker's /healthz, /readyz and /metrics.
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

    /// The LLM provider's API: `openai` (chat completions, which most providers also speak)
    /// or `anthropic` (Anthropic's Messages API).
    #[arg(long, env = env::LLM_PROVIDER, value_enum, default_value = "openai")]
    pub llm_provider: LlmProvider,

    /// Base URL of the provider's API [default: https://api.openai.com/v1 for openai,
    /// https://api.anthropic.com/v1 for anthropic].
    #[arg(long, env = env::LLM_BASE_URL)]
    pub llm_base_url: Option<String>,

    /// Model name sent to the provider [default: gpt-4o-mini for openai; anthropic needs one].
    #[arg(long, env = env::LLM_MODEL)]
    pub llm_model: Option<String>,

    /// Longest wait for one LLM answer, in milliseconds (the job's deadline may cut it shorter).
    #[arg(long, env = env::LLM_TIMEOUT_MS, default_value_t = 60_000)]
    pub llm_timeout_ms: u64,

    /// Ask the provider to stream its answer (`true`) or to send it whole (`false`) for a client
    /// that asked for the whole letter; a client that asked for a stream always gets one. Both
    /// detect an answer cut short; a whole answer costs the worker one read instead of one per
    /// token.
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

    /// Field of that secret holding the key (the fallback's key too).
    #[arg(long, env = env::LLM_KEY_FIELD, default_value = "api_key")]
    pub llm_key_field: String,

    /// API of a second provider, tried when the first fails a job for good [default: the
    /// first's]. Setting any of the fallback options turns the fallback on.
    #[arg(long, env = env::LLM_FALLBACK_PROVIDER, value_enum)]
    pub llm_fallback_provider: Option<LlmProvider>,

    /// Base URL of the fallback's API [default: the first provider's when the API is the
    /// same, else that API's usual one].
    #[arg(long, env = env::LLM_FALLBACK_BASE_URL)]
    pub llm_fallback_base_url: Option<String>,

    /// Model asked of the fallback [default: the first's when the API is the same].
    #[arg(long, env = env::LLM_FALLBACK_MODEL)]
    pub llm_fallback_model: Option<String>,

    /// KV v2 path of the fallback's key in Vault [default: the first key, only when the
    /// fallback is the same provider at the same URL: a key is never sent to another one].
    #[arg(long, env = env::LLM_FALLBACK_KEY_PATH)]
    pub llm_fallback_key_path: Option<String>,

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
            llm_provider: LlmProvider::OpenAi,
            llm_base_url: None,
            llm_model: None,
            llm_timeout_ms: 60_000,
            llm_stream: false,
            llm_max_attempts: 4,
            broker_ack_timeout_ms: 1_800_000,
            llm_key_path: DEFAULT_LLM_KEY_PATH.to_owned(),
            llm_key_field: "api_key".to_owned(),
            llm_fallback_provider: None,
            llm_fallback_base_url: None,
            llm_fallback_model: None,
            llm_fallback_key_path: None,
            secret_cache_ttl_secs: 300,
            secret_max_staleness: std::time::Duration::from_secs(3600),
            prompt_version: "v2".to_owned(),
            vault: VaultArgs::default(),
            tokens: TokenArgs::default(),
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
        }
    }
}

/// One provider a worker calls: its API, where, which model, and where its key is in Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmTarget {
    pub provider: LlmProvider,
    pub base_url: String,
    pub model: String,
    pub key_path: String,
}

impl ConsumerSettings {
    /// The provider every job goes to first.
    pub fn primary_llm(&self) -> Result<LlmTarget, String> {
        let provider = self.llm_provider;
        let model = match (&self.llm_model, provider) {
            (Some(model), _) => model.clone(),
            (None, LlmProvider::OpenAi) => DEFAULT_LLM_MODEL.to_owned(),
            (None, LlmProvider::Anthropic) => {
                return Err(format!(
                    "{}=anthropic needs {}: the name of an Anthropic model",
                    env::LLM_PROVIDER,
                    env::LLM_MODEL
                ));
            }
        };
        Ok(LlmTarget {
            provider,
            base_url: self
                .llm_base_url
                .clone()
                .unwrap_or_else(|| provider.default_base_url().to_owned()),
            model,
            key_path: self.llm_key_path.clone(),
        })
    }

    /// The provider a job goes to when the first failed it for good, if any fallback option is
    /// set. Options left unset follow the first provider's as far as that is safe: another API
    /// needs its own model, and another API or URL its own key, so a key never reaches a
    /// provider it was not made for.
    pub fn fallback_llm(&self) -> Result<Option<LlmTarget>, String> {
        if self.llm_fallback_provider.is_none()
            && self.llm_fallback_base_url.is_none()
            && self.llm_fallback_model.is_none()
            && self.llm_fallback_key_path.is_none()
        {
            return Ok(None);
        }
        let primary = self.primary_llm()?;
        let provider = self.llm_fallback_provider.unwrap_or(primary.provider);
        let same_api = provider == primary.provider;
        let base_url = match &self.llm_fallback_base_url {
            Some(url) => url.clone(),
            None if same_api => primary.base_url.clone(),
            None => provider.default_base_url().to_owned(),
        };
        let model = match &self.llm_fallback_model {
            Some(model) => model.clone(),
            None if same_api => primary.model.clone(),
            None => {
                return Err(format!(
                    "a fallback with another API than {} needs {}",
                    env::LLM_PROVIDER,
                    env::LLM_FALLBACK_MODEL
                ));
            }
        };
        let same_place =
            same_api && base_url.trim_end_matches('/') == primary.base_url.trim_end_matches('/');
        let key_path = match &self.llm_fallback_key_path {
            Some(path) => path.clone(),
            None if same_place => primary.key_path.clone(),
            None => {
                return Err(format!(
                    "a fallback at another provider needs its own key: set {}",
                    env::LLM_FALLBACK_KEY_PATH
                ));
            }
        };
        let fallback = LlmTarget {
            provider,
            base_url,
            model,
            key_path,
        };
        if fallback == primary {
            return Err(format!(
                "the fallback is the first provider itself: give it another API, URL, model or key ({}, {}, {}, {})",
                env::LLM_FALLBACK_PROVIDER,
                env::LLM_FALLBACK_BASE_URL,
                env::LLM_FALLBACK_MODEL,
                env::LLM_FALLBACK_KEY_PATH
            ));
        }
        Ok(Some(fallback))
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
        assert_eq!(default("llm_provider"), defaults.llm_provider.as_str());
        // Their defaults follow the provider (see `primary_llm`).
        assert_eq!(default_of(&command, "llm_base_url"), None);
        assert_eq!(default_of(&command, "llm_model"), None);
        assert_eq!(defaults.llm_base_url, None);
        assert_eq!(defaults.llm_model, None);
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

    fn parse(args: &[&str]) -> ConsumerSettings {
        let mut argv = vec!["letterbox-consumer"];
        argv.extend_from_slice(args);
        ConsumerSettings::try_parse_from(argv).unwrap()
    }

    #[test]
    fn the_base_url_and_model_default_by_provider() {
        assert_eq!(
            parse(&[]).primary_llm(),
            Ok(LlmTarget {
                provider: LlmProvider::OpenAi,
                base_url: "https://api.openai.com/v1".into(),
                model: "gpt-4o-mini".into(),
                key_path: "secret/letterbox/llm".into(),
            })
        );
        let anthropic = parse(&["--llm-provider", "anthropic", "--llm-model", "claude-x"]);
        assert_eq!(
            anthropic.primary_llm().map(|target| target.base_url),
            Ok("https://api.anthropic.com/v1".to_owned())
        );
        assert_eq!(
            parse(&["--llm-provider", "anthropic"]).primary_llm(),
            Err("LLM_PROVIDER=anthropic needs LLM_MODEL: the name of an Anthropic model".into())
        );
        assert_eq!(parse(&[]).fallback_llm(), Ok(None));
    }

    #[test]
    fn a_fallback_follows_the_first_provider_but_never_takes_its_key_elsewhere() {
        // A second key for the same provider.
        let second_key = parse(&["--llm-fallback-key-path", "secret/letterbox/llm-fallback"]);
        assert_eq!(
            second_key.fallback_llm(),
            Ok(Some(LlmTarget {
                provider: LlmProvider::OpenAi,
                base_url: "https://api.openai.com/v1".into(),
                model: "gpt-4o-mini".into(),
                key_path: "secret/letterbox/llm-fallback".into(),
            }))
        );
        // Another model at the same provider may use the same key.
        let other_model = parse(&["--llm-fallback-model", "gpt-4o"]);
        assert_eq!(
            other_model.fallback_llm().unwrap().unwrap().key_path,
            "secret/letterbox/llm"
        );
        // Another provider: its own URL by default, and a model and a key of its own.
        let anthropic = parse(&[
            "--llm-fallback-provider",
            "anthropic",
            "--llm-fallback-model",
            "claude-x",
            "--llm-fallback-key-path",
            "secret/letterbox/llm-fallback",
        ]);
        assert_eq!(
            anthropic.fallback_llm(),
            Ok(Some(LlmTarget {
                provider: LlmProvider::Anthropic,
                base_url: "https://api.anthropic.com/v1".into(),
                model: "claude-x".into(),
                key_path: "secret/letterbox/llm-fallback".into(),
            }))
        );
        assert_eq!(
            parse(&["--llm-fallback-provider", "anthropic", "--llm-fallback-model", "c"])
                .fallback_llm(),
            Err("a fallback at another provider needs its own key: set LETTERBOX_LLM_FALLBACK_KEY_PATH".into())
        );
        assert_eq!(
            parse(&["--llm-fallback-base-url", "https://gateway.example/v1"]).fallback_llm(),
            Err("a fallback at another provider needs its own key: set LETTERBOX_LLM_FALLBACK_KEY_PATH".into())
        );
        assert_eq!(
            parse(&["--llm-fallback-provider", "anthropic"]).fallback_llm(),
            Err("a fallback with another API than LLM_PROVIDER needs LLM_FALLBACK_MODEL".into())
        );
        assert!(
            parse(&["--llm-fallback-provider", "openai"])
                .fallback_llm()
                .unwrap_err()
                .starts_with("the fallback is the first provider itself")
        );
    }
}
