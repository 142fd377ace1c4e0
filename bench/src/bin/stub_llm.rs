//! `letterbox-stub-llm`: the stub LLM as a process, for the demo and for load tests.
//!
//! Prints `letterbox-stub-llm listening on http://ADDR/v1` on stdout once the port accepts
//! connections (scripts wait for that line), and stops on SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use letterbox_bench::stub::{self, Failure, Latency, StubConfig, env};

/// An OpenAI-compatible chat-completions server that writes cover letters from the prompt.
#[derive(Parser)]
#[command(name = "letterbox-stub-llm", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = env::ADDR, default_value = "127.0.0.1:8089")]
    addr: SocketAddr,
    /// The bearer key clients must send.
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
    #[arg(long, env = env::FAIL_STATUS)]
    fail_status: Option<u16>,
    /// Fail the first call and every N-th after it (1: every call).
    #[arg(long, env = env::FAIL_EVERY, default_value_t = 1, requires = "fail_status")]
    fail_every: u32,
}

impl Args {
    fn config(self) -> StubConfig {
        let latency = match self.latency_median_ms {
            Some(median) => Latency::LogNormal {
                median: Duration::from_millis(median),
                sigma: self.latency_sigma,
            },
            None => Latency::Fixed(Duration::from_millis(self.latency_ms)),
        };
        StubConfig {
            key: self.key,
            latency,
            model: self.model,
            failure: self.fail_status.map(|status| Failure::Status {
                status,
                every: self.fail_every,
            }),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    letterbox::telemetry::init_tracing();
    let addr = args.addr;
    let config = args.config();
    tracing::info!(latency = ?config.latency, failure = ?config.failure, model = %config.model, "Starting the stub LLM");
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
