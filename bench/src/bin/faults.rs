//! `letterbox-faults`: the fault-injection suite (see `letterbox_bench::faults`). Prints the
//! table on stdout, writes it as JSON with `--json`, and exits 1 when a scenario failed.
//! `script/faults` builds the binaries and runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use letterbox_bench::faults::{self, Scenario, Settings};

/// Runs Letterbox's real binaries under load on a broker and a Vault of their own, breaks one
/// thing at a time, and reports what the clients saw.
#[derive(Parser)]
#[command(name = "letterbox-faults", version, after_help = letterbox::telemetry::LOG_HELP)]
struct Args {
    /// The quick version (8 clients, 5 s per scenario) that script/test runs.
    #[arg(long)]
    short: bool,
    /// Write the table as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only these scenarios (comma-separated), in this order.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Concurrent clients (default: 20, or 8 with --short).
    #[arg(long)]
    clients: Option<usize>,
    /// Length of each scenario's load, in seconds (default: 20, or 5 with --short).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Workers the fleet keeps running.
    #[arg(long, default_value_t = 3)]
    consumers: usize,
    /// The ingress's LETTERBOX_JOB_TIMEOUT_MS.
    #[arg(long, default_value_t = 8000)]
    job_timeout_ms: u64,
    /// The workers' LETTERBOX_LLM_TIMEOUT_MS.
    #[arg(long, default_value_t = 4000)]
    llm_timeout_ms: u64,
    /// Median of the stub LLM's log-normal latency.
    #[arg(long, default_value_t = 300)]
    latency_median_ms: u64,
    /// Spread of the stub LLM's latency.
    #[arg(long, default_value_t = 0.5)]
    latency_sigma: f64,
    /// Directory of the Letterbox binaries (default: the one this binary is in).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The OpenBao binary (default: .venv/bin/bao of the repository, else bao on the PATH).
    #[arg(long)]
    bao: Option<PathBuf>,
    /// Keep the suite's directory (logs, broker data) even when everything passed.
    #[arg(long)]
    keep: bool,
}

impl Args {
    fn settings(self) -> anyhow::Result<Settings> {
        let bin_dir = letterbox_bench::bin_dir(self.bin_dir)?;
        let bao = letterbox_bench::bao_binary(self.bao);
        let mut settings = if self.short {
            Settings::short(bin_dir, bao)
        } else {
            Settings::full(bin_dir, bao)
        };
        if !self.scenarios.is_empty() {
            settings.scenarios = self.scenarios;
        }
        if let Some(clients) = self.clients {
            anyhow::ensure!(clients > 0, "--clients must be at least 1");
            settings.clients = clients;
        }
        if let Some(seconds) = self.duration_secs {
            anyhow::ensure!(
                seconds * 1000 > settings.timing.fault_at.as_millis() as u64,
                "--duration-secs must leave time before the fault ({} ms in)",
                settings.timing.fault_at.as_millis()
            );
            settings.timing.duration = Duration::from_secs(seconds);
        }
        anyhow::ensure!(self.consumers > 0, "--consumers must be at least 1");
        settings.consumers = self.consumers;
        settings.job_timeout = Duration::from_millis(self.job_timeout_ms);
        settings.llm_timeout = Duration::from_millis(self.llm_timeout_ms);
        settings.latency_median = Duration::from_millis(self.latency_median_ms);
        settings.latency_sigma = self.latency_sigma;
        settings.keep = self.keep;
        Ok(settings)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    letterbox::telemetry::init_tracing();
    letterbox::install_crypto_provider();
    let json = args.json.clone();
    let run = async {
        let settings = args.settings()?;
        // An interrupted run still stops what it started: dropping the suite stops it all.
        tokio::select! {
            report = faults::run(settings) => report,
            () = letterbox::shutdown::signal() => Err(anyhow::anyhow!("interrupted")),
        }
    };
    let report = match run.await {
        Ok(report) => report,
        Err(error) => {
            tracing::error!("{error:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.render());
    if let Some(path) = json
        && let Err(error) = report.write_json(&path)
    {
        tracing::error!("{error:#}");
        return ExitCode::FAILURE;
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
