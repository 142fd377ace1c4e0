//! The ingress's settings: one typed tree, each field bound to one environment variable.

use std::net::SocketAddr;

use clap::Parser;
use letterbox::env;
use secrecy::SecretString;

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_JOBS_QUEUE: &str = "letterbox.jobs";

/// letterbox-producer: the HTTP ingress. Checks and extracts documents in memory, publishes one
/// job per request to RabbitMQ and answers with the letter when a worker replies.
#[derive(Parser, Clone)]
#[command(name = "letterbox-producer", version, about, long_about = None)]
pub struct ProducerSettings {
    /// Address the HTTP API listens on.
    #[arg(long, env = env::HTTP_ADDR, default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// RabbitMQ URL (credentials included; never logged).
    #[arg(long, env = env::AMQP_URL, default_value = DEFAULT_AMQP_URL, hide_default_value = true)]
    pub amqp_url: SecretString,

    /// Name of the jobs queue; its dead-letter queue is `<name>.dead`.
    #[arg(long, env = env::JOBS_QUEUE, default_value = DEFAULT_JOBS_QUEUE)]
    pub jobs_queue: String,

    /// Most jobs the queue holds before it refuses new ones (answered 503).
    #[arg(long, env = env::QUEUE_MAX_LENGTH, default_value_t = 10_000)]
    pub queue_max_length: u32,

    /// Deliveries of one job before it is dead-lettered.
    #[arg(long, env = env::MAX_DELIVERIES, default_value_t = 3)]
    pub max_deliveries: u32,

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

    /// Time allowed to in-flight requests after SIGTERM, in milliseconds.
    #[arg(long, env = env::SHUTDOWN_GRACE_MS, default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,
}

impl ProducerSettings {
    /// The defaults, as if no option and no variable were given.
    pub fn defaults() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            amqp_url: SecretString::from(DEFAULT_AMQP_URL.to_owned()),
            jobs_queue: DEFAULT_JOBS_QUEUE.to_owned(),
            queue_max_length: 10_000,
            max_deliveries: 3,
            job_timeout_ms: 30_000,
            max_upload_bytes: 10 * 1024 * 1024,
            max_resume_chars: 50_000,
            max_job_description_chars: 30_000,
            max_waiting: 5_000,
            shutdown_grace_ms: 30_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn defaults_match_the_command_line_defaults() {
        let command = ProducerSettings::command();
        let default_of = |id: &str| {
            let arg = command.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_default_values()[0].to_str().unwrap().to_owned()
        };
        let defaults = ProducerSettings::defaults();
        assert_eq!(default_of("http_addr"), defaults.http_addr.to_string());
        assert_eq!(default_of("amqp_url"), defaults.amqp_url.expose_secret());
        assert_eq!(default_of("jobs_queue"), defaults.jobs_queue);
        assert_eq!(
            default_of("queue_max_length"),
            defaults.queue_max_length.to_string()
        );
        assert_eq!(
            default_of("max_deliveries"),
            defaults.max_deliveries.to_string()
        );
        assert_eq!(
            default_of("job_timeout_ms"),
            defaults.job_timeout_ms.to_string()
        );
        assert_eq!(
            default_of("max_upload_bytes"),
            defaults.max_upload_bytes.to_string()
        );
        assert_eq!(
            default_of("max_resume_chars"),
            defaults.max_resume_chars.to_string()
        );
        assert_eq!(
            default_of("max_job_description_chars"),
            defaults.max_job_description_chars.to_string()
        );
        assert_eq!(default_of("max_waiting"), defaults.max_waiting.to_string());
        assert_eq!(
            default_of("shutdown_grace_ms"),
            defaults.shutdown_grace_ms.to_string()
        );
    }

    #[test]
    fn every_option_names_its_environment_variable() {
        for arg in ProducerSettings::command().get_arguments() {
            if arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            assert!(
                arg.get_env().is_some(),
                "{} has no environment variable",
                arg.get_id()
            );
        }
    }
}
