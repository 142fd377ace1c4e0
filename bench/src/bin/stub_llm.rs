//! `letterbox-stub-llm`: the stub LLM as a process, for the demo and for load tests.
//!
//! Prints `letterbox-stub-llm listening on http://ADDR/v1` on stdout once the port accepts
//! connections (scripts wait for that line), and stops on SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use letterbox_bench::stub::{self, Failure, Latency, RateLimit, RetryAfter, StubConfig, env};

/// A stand-in LLM that writes cover letters from the prompt: OpenAI's chat completions at
/// /v1/chat/completions and Anthropic's Messages API at /v1/messages.
#[derive(Parser)]
#[command(name = "letterbox-stub-llm", version, after_help = letterbox::telemetry::LOG_HELP)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = env::ADDR, default_value = "127.0.0.1:8089")]
    addr: SocketAddr,
    /// The key clients must send (a bearer key, or Anthropic's x-api-key).
    #[arg(long, env = env::KEY, hide_env_values = true)]
    key: String,
    /// Fixed latency of every answer, in milliseconds.
    #[arg(long, env = env::LATENCY_MS, default_value_t = 0, conflicts_with = "latency_median_ms")]
    latency_ms: u64,
    /// Median of a log-normal latency, in milliseconds (instead of --latency-ms).
    #[arg(long, env = env::LATENCY_MEDIAN_MS)]
    latency_median_ms: Option<u64>,
    /// Spread of the log-normal latency; 0.5 puts p99 at about 3.2 x the median.
    #[arg(long, env = env::LATENCY_SIGMA, default_value_t = 0.5, requires = "latency_median_ms")]
    latency_sigma: f64,
    /// Model name reported in answers.
    #[arg(long, env = env::MODEL, default_value = stub::DEFAULT_MODEL)]
    model: String,
    /// HTTP status (400-599) to answer instead of a letter on failing calls.
    #[arg(long, env = env::FAIL_STATUS, group = "failure")]
    fail_status: Option<u16>,
    /// A failure other than an error status, on failing calls.
    #[arg(long, env = env::FAIL, value_enum, group = "failure")]
    fail: Option<FailMode>,
    /// Fail the first call and every N-th after it (1: every call).
    #[arg(long, env = env::FAIL_EVERY, default_value_t = 1, requires = "failure")]
    fail_every: u32,
    /// With --fail rate-limited: the hint sent, 1s (Retry-After: 1), date+2s (Retry-After as an
    /// HTTP date 2 s ahead), 1500ms (retry-after-ms: 1500) or none.
    #[arg(long, env = env::RETRY_AFTER, default_value = "1s", requires = "fail")]
    retry_after: RetryAfter,
    /// Calls per second answered; calls over it get 429 with the wait in `retry-after-ms` and
    /// `Retry-After` (GCRA).
    #[arg(long, env = env::RATE_LIMIT)]
    rate_limit: Option<NonZeroU32>,
    /// With --rate-limit: calls taken at once after a pause (default: one second's worth).
    #[arg(long, env = env::RATE_BURST, requires = "rate_limit")]
    rate_burst: Option<NonZeroU32>,
}

/// The failures `--fail` names; see `letterbox_bench::stub::Failure`.
#[derive(Clone, Copy, ValueEnum)]
enum FailMode {
    /// 429 with the --retry-after hint.
    RateLimited,
    /// Never answer.
    Hang,
    /// 200, then a stream (or JSON body) that stops inside the letter.
    CutStream,
    /// 200, then an error event (or an error body).
    ErrorEvent,
}

impl Args {
    fn config(self) -> StubConfig {
        let failure = self.failure();
        let latency = match self.latency_median_ms {
            Some(median) => Latency::LogNormal {
                median: Duration::from_millis(median),
                sigma: self.latency_sigma,
            },
            None => Latency::Fixed(Duration::from_millis(self.latency_ms)),
        };
        let rate_limit = self.rate_limit.map(|per_second| RateLimit {
            per_second,
            burst: self.rate_burst.unwrap_or(per_second),
        });
        StubConfig {
            key: self.key,
            latency,
            model: self.model,
            failure,
            rate_limit,
        }
    }

    fn failure(&self) -> Option<Failure> {
        let every = self.fail_every;
        if let Some(status) = self.fail_status {
            return Some(Failure::Status { status, every });
        }
        Some(match self.fail? {
            FailMode::RateLimited => Failure::RateLimited {
                every,
                retry_after: self.retry_after,
            },
            FailMode::Hang => Failure::Hang { every },
            FailMode::CutStream => Failure::CutStream { every },
            FailMode::ErrorEvent => Failure::ErrorEvent { every },
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    letterbox::telemetry::init_tracing();
    let addr = args.addr;
    let config = args.config();
    tracing::info!(latency = ?config.latency, failure = ?config.failure, rate_limit = ?config.rate_limit, model = %config.model, "Starting the stub LLM");
    let handle = stub::spawn(config, addr).await?;

    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "letterbox-stub-llm listening on {}",
        handle.base_url
    )?;
    stdout.flush()?;
    drop(stdout);

    letterbox::shutdown::signal().await;
    handle.shutdown().await;
    Ok(())
}
