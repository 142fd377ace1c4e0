//! Every environment variable Letterbox reads, named once.
//!
//! The binaries bind these to their command-line options (clap's `env`), and the README's
//! configuration table lists the same names.

pub const HTTP_ADDR: &str = "LETTERBOX_HTTP_ADDR";
pub const TLS_CERT: &str = "LETTERBOX_TLS_CERT";
pub const TLS_KEY: &str = "LETTERBOX_TLS_KEY";
pub const TLS_MIN_VERSION: &str = "LETTERBOX_TLS_MIN_VERSION";
pub const METRICS_ADDR: &str = "LETTERBOX_METRICS_ADDR";
pub const AMQP_URL: &str = "AMQP_URL";
pub const AMQP_CA_CERT: &str = "LETTERBOX_AMQP_CA_CERT";
pub const JOBS_QUEUE: &str = "LETTERBOX_JOBS_QUEUE";
pub const QUEUE_MAX_LENGTH: &str = "LETTERBOX_QUEUE_MAX_LENGTH";
pub const MAX_DELIVERIES: &str = "LETTERBOX_MAX_DELIVERIES";
pub const JOB_TIMEOUT_MS: &str = "LETTERBOX_JOB_TIMEOUT_MS";
pub const MAX_UPLOAD_BYTES: &str = "LETTERBOX_MAX_UPLOAD_BYTES";
pub const MAX_RESUME_CHARS: &str = "LETTERBOX_MAX_RESUME_CHARS";
pub const MAX_JOB_DESCRIPTION_CHARS: &str = "LETTERBOX_MAX_JOB_DESCRIPTION_CHARS";
pub const HEADER_TIMEOUT_MS: &str = "LETTERBOX_HEADER_TIMEOUT_MS";
pub const MAX_WAITING: &str = "LETTERBOX_MAX_WAITING";
pub const CONCURRENCY: &str = "LETTERBOX_CONCURRENCY";
pub const ADAPTIVE_CONCURRENCY: &str = "LETTERBOX_ADAPTIVE_CONCURRENCY";
pub const LLM_BASE_URL: &str = "LLM_BASE_URL";
pub const LLM_MODEL: &str = "LLM_MODEL";
pub const LLM_TIMEOUT_MS: &str = "LETTERBOX_LLM_TIMEOUT_MS";
pub const LLM_MAX_ATTEMPTS: &str = "LETTERBOX_LLM_MAX_ATTEMPTS";
pub const LLM_STREAM: &str = "LETTERBOX_LLM_STREAM";
pub const BROKER_ACK_TIMEOUT_MS: &str = "LETTERBOX_BROKER_ACK_TIMEOUT_MS";
pub const LLM_KEY_PATH: &str = "LETTERBOX_LLM_KEY_PATH";
pub const LLM_KEY_FIELD: &str = "LETTERBOX_LLM_KEY_FIELD";
pub const SECRET_CACHE_TTL_SECS: &str = "LETTERBOX_SECRET_CACHE_TTL_SECS";
pub const SECRET_MAX_STALENESS: &str = "LETTERBOX_SECRET_MAX_STALENESS";
pub const PROMPT_VERSION: &str = "LETTERBOX_PROMPT_VERSION";
pub const AUTH: &str = "LETTERBOX_AUTH";
pub const TOKENS_PATH: &str = "LETTERBOX_TOKENS_PATH";
pub const DEFAULT_RATE: &str = "LETTERBOX_DEFAULT_RATE";
pub const TOKEN_REFRESH_SECS: &str = "LETTERBOX_TOKEN_REFRESH_SECS";
pub const TRANSIT_MOUNT: &str = "LETTERBOX_TRANSIT_MOUNT";
pub const PAYLOAD_KEY: &str = "LETTERBOX_PAYLOAD_KEY";
pub const VAULT_ADDR: &str = "VAULT_ADDR";
pub const VAULT_TOKEN: &str = "VAULT_TOKEN";
pub const VAULT_CACERT: &str = "VAULT_CACERT";
pub const VAULT_ROLE_ID: &str = "VAULT_ROLE_ID";
pub const VAULT_SECRET_ID: &str = "VAULT_SECRET_ID";
pub const VAULT_APPROLE_MOUNT: &str = "VAULT_APPROLE_MOUNT";
pub const VAULT_TIMEOUT_MS: &str = "LETTERBOX_VAULT_TIMEOUT_MS";
pub const SHUTDOWN_GRACE_MS: &str = "LETTERBOX_SHUTDOWN_GRACE_MS";
pub const LOG: &str = "LETTERBOX_LOG";
pub const LOG_FORMAT: &str = "LETTERBOX_LOG_FORMAT";
