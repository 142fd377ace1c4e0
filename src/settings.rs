//! Settings both binaries share. Each binary's settings tree flattens these in, so an option is
//! declared once, with one environment variable and one default.

use std::path::PathBuf;

use clap::Args;
use secrecy::SecretString;

use crate::env;

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_JOBS_QUEUE: &str = "letterbox.jobs";
pub const DEFAULT_QUEUE_MAX_LENGTH: u32 = 10_000;
pub const DEFAULT_MAX_DELIVERIES: u32 = 3;
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
pub const DEFAULT_VAULT_ADDR: &str = "http://127.0.0.1:8200";
pub const DEFAULT_TOKENS_PATH: &str = "secret/letterbox/tokens";
pub const DEFAULT_PAYLOAD_KEY: &str = "letterbox-payload";

/// Where the broker is and what the queues look like. Producer and consumer must agree on the
/// queue arguments: the first to start declares them, and the other's declaration must match.
#[derive(Args, Clone)]
pub struct BrokerSettings {
    /// RabbitMQ URL (credentials included; never logged).
    #[arg(
        long,
        env = env::AMQP_URL,
        default_value = DEFAULT_AMQP_URL,
        hide_env_values = true
    )]
    pub amqp_url: SecretString,

    /// PEM file of the CA certificate(s) an `amqps://` broker's certificate is checked against,
    /// beside the system's roots.
    #[arg(long, env = env::AMQP_CA_CERT)]
    pub amqp_ca_cert: Option<PathBuf>,

    /// Name of the jobs queue; its dead-letter queue is `<name>.dead`.
    #[arg(long, env = env::JOBS_QUEUE, default_value = DEFAULT_JOBS_QUEUE)]
    pub jobs_queue: String,

    /// Most jobs the queue holds before it refuses new ones (answered 503).
    #[arg(long, env = env::QUEUE_MAX_LENGTH, default_value_t = DEFAULT_QUEUE_MAX_LENGTH)]
    pub queue_max_length: u32,

    /// Deliveries of one job before it is dead-lettered.
    #[arg(long, env = env::MAX_DELIVERIES, default_value_t = DEFAULT_MAX_DELIVERIES)]
    pub max_deliveries: u32,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            amqp_url: SecretString::from(DEFAULT_AMQP_URL.to_owned()),
            amqp_ca_cert: None,
            jobs_queue: DEFAULT_JOBS_QUEUE.to_owned(),
            queue_max_length: DEFAULT_QUEUE_MAX_LENGTH,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
        }
    }
}

/// How to reach and authenticate to Vault (or OpenBao). Every Letterbox process that talks to
/// Vault takes these; the Vault adapter turns them into a client.
#[derive(Args, Clone)]
pub struct VaultArgs {
    /// Vault (or OpenBao) address.
    #[arg(long, env = env::VAULT_ADDR, default_value = DEFAULT_VAULT_ADDR)]
    pub vault_addr: String,

    /// PEM file of the CA certificate(s) an `https://` Vault's certificate is checked against,
    /// beside the system's roots.
    #[arg(long, env = env::VAULT_CACERT)]
    pub vault_cacert: Option<PathBuf>,

    /// Vault token (development); prefer AppRole.
    #[arg(long, env = env::VAULT_TOKEN, hide_env_values = true)]
    pub vault_token: Option<SecretString>,

    /// AppRole role id.
    #[arg(long, env = env::VAULT_ROLE_ID)]
    pub vault_role_id: Option<String>,

    /// AppRole secret id.
    #[arg(long, env = env::VAULT_SECRET_ID, hide_env_values = true)]
    pub vault_secret_id: Option<SecretString>,

    /// Mount path of the AppRole auth method.
    #[arg(long, env = env::VAULT_APPROLE_MOUNT, default_value = "approle")]
    pub vault_approle_mount: String,

    /// Timeout of one Vault request, in milliseconds.
    #[arg(long, env = env::VAULT_TIMEOUT_MS, default_value_t = 5_000)]
    pub vault_timeout_ms: u64,

    /// Mount path of Vault's transit engine.
    #[arg(long, env = env::TRANSIT_MOUNT, default_value = "transit")]
    pub transit_mount: String,

    /// Transit key that wraps the data keys sealing job and reply bodies.
    #[arg(long, env = env::PAYLOAD_KEY, default_value = DEFAULT_PAYLOAD_KEY)]
    pub payload_key: String,
}

impl Default for VaultArgs {
    fn default() -> Self {
        Self {
            vault_addr: DEFAULT_VAULT_ADDR.to_owned(),
            vault_cacert: None,
            vault_token: None,
            vault_role_id: None,
            vault_secret_id: None,
            vault_approle_mount: "approle".to_owned(),
            vault_timeout_ms: 5_000,
            transit_mount: "transit".to_owned(),
            payload_key: DEFAULT_PAYLOAD_KEY.to_owned(),
        }
    }
}

/// The options of `command` that no environment variable can set (help and version aside).
/// Every binary's tests assert this is empty: the README's table lists variables, not flags.
pub fn options_without_env(command: &clap::Command) -> Vec<String> {
    command
        .get_arguments()
        .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
        .filter(|arg| arg.get_env().is_none())
        .map(|arg| arg.get_id().to_string())
        .collect()
}

/// The default of option `id` of `command` as text, for checking a code default against it.
pub fn default_of(command: &clap::Command, id: &str) -> Option<String> {
    let arg = command.get_arguments().find(|a| a.get_id() == id)?;
    let value = arg.get_default_values().first()?;
    value.to_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use secrecy::ExposeSecret;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        broker: BrokerSettings,
        #[command(flatten)]
        vault: VaultArgs,
    }

    #[test]
    fn defaults_match_the_command_line_defaults() {
        let command = Wrapper::command();
        let defaults = BrokerSettings::default();
        let default = |id| default_of(&command, id).unwrap();
        assert_eq!(default("amqp_url"), defaults.amqp_url.expose_secret());
        assert_eq!(default("jobs_queue"), defaults.jobs_queue);
        assert_eq!(
            default("queue_max_length"),
            defaults.queue_max_length.to_string()
        );
        assert_eq!(
            default("max_deliveries"),
            defaults.max_deliveries.to_string()
        );
        let vault = VaultArgs::default();
        assert_eq!(default("vault_addr"), vault.vault_addr);
        assert_eq!(default("vault_approle_mount"), vault.vault_approle_mount);
        assert_eq!(
            default("vault_timeout_ms"),
            vault.vault_timeout_ms.to_string()
        );
        assert_eq!(default("transit_mount"), vault.transit_mount);
        assert_eq!(default("payload_key"), vault.payload_key);
        assert!(options_without_env(&command).is_empty());
    }
}
