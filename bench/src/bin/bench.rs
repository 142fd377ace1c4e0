//! `letterbox-bench`: the load generator (see `letterbox_bench::load`). Prints each step as it
//! is measured and the whole table at the end; writes `<out>/<name>.json` and a plot per phase.
//! `script/bench` builds the release binaries and runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use letterbox_bench::load::litellm::LiteLlm;
use letterbox_bench::load::report::{PEAK, SCALE, SWEEP};
use letterbox_bench::load::schedule::Mode;
use letterbox_bench::load::target::System;
use letterbox_bench::load::{self, Phase, Settings};

/// Which phases to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Plan {
    /// One phase: --systems under --users (or --rates) with a --stub-latency-ms stub.
    Sweep,
    /// Everything the README's results table needs, in one run: the sweep (1 s stub, every
    /// system), the peak (0 ms stub, letterbox and the floor at --peak-users), and the scale-out
    /// (1, 2 and 4 consumers of 50 calls each, 1 s stub, --scale-users users).
    Targets,
}

/// Sends the same load to Letterbox (its real binaries), to its broker path alone, to the stub
/// LLM alone and to LiteLLM's proxy, on a broker and a Vault of its own, and reports latency,
/// overhead, throughput, errors and memory per step.
#[derive(Parser)]
#[command(name = "letterbox-bench", version, after_help = letterbox::telemetry::LOG_HELP)]
struct Args {
    #[arg(
        long,
        env = "LETTERBOX_BENCH_PLAN",
        value_enum,
        default_value = "sweep"
    )]
    plan: Plan,
    /// Systems to load, in this order.
    #[arg(
        long,
        env = "LETTERBOX_BENCH_SYSTEMS",
        value_enum,
        value_delimiter = ',',
        default_value = "letterbox,broker,direct,litellm"
    )]
    systems: Vec<System>,
    /// Closed-loop steps: this many concurrent users each.
    #[arg(
        long,
        env = "LETTERBOX_BENCH_USERS",
        value_delimiter = ',',
        default_value = "1,10,100,250,500,1000"
    )]
    users: Vec<usize>,
    /// Open-loop steps instead: this many requests per second each (latency corrected for
    /// coordinated omission).
    #[arg(long, env = "LETTERBOX_BENCH_RATES", value_delimiter = ',')]
    rates: Vec<f64>,
    /// The stub LLM's fixed latency (the sweep's).
    #[arg(long, env = "LETTERBOX_BENCH_STUB_LATENCY_MS", default_value_t = 1000)]
    stub_latency_ms: u64,
    /// Worker processes (and the floor's workers).
    #[arg(long, env = "LETTERBOX_BENCH_CONSUMERS", default_value_t = 2)]
    consumers: usize,
    /// LETTERBOX_CONCURRENCY of each worker (and the floor's prefetch).
    #[arg(long, env = "LETTERBOX_BENCH_CONCURRENCY", default_value_t = 1000)]
    concurrency: u16,
    /// LETTERBOX_ADAPTIVE_CONCURRENCY of each worker.
    #[arg(long, env = "LETTERBOX_BENCH_ADAPTIVE_CONCURRENCY", default_value_t = false, action = clap::ArgAction::Set)]
    adaptive_concurrency: bool,
    /// --plan targets: the 0 ms stub's closed-loop steps.
    #[arg(
        long,
        env = "LETTERBOX_BENCH_PEAK_USERS",
        value_delimiter = ',',
        default_value = "50,100,250,500"
    )]
    peak_users: Vec<usize>,
    /// --plan targets: worker processes (and the floor's workers) of the 0 ms stub's steps. One
    /// worker already keeps every core busy; on a small box a second adds only hand-overs.
    #[arg(long, env = "LETTERBOX_BENCH_PEAK_CONSUMERS", default_value_t = 1)]
    peak_consumers: usize,
    /// --plan targets: the users of each scale-out step (enough to keep 4 × 50 calls busy).
    #[arg(long, env = "LETTERBOX_BENCH_SCALE_USERS", default_value_t = 400)]
    scale_users: usize,
    /// Unmeasured seconds at the start of each step.
    #[arg(long, env = "LETTERBOX_BENCH_WARMUP_SECS", default_value_t = 5.0)]
    warmup_secs: f64,
    /// Measured seconds of each step.
    #[arg(long, env = "LETTERBOX_BENCH_DURATION_SECS", default_value_t = 20.0)]
    duration_secs: f64,
    /// Directory of the Letterbox binaries (default: the one this binary is in).
    #[arg(long, env = "LETTERBOX_BENCH_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// The OpenBao binary (default: .venv/bin/bao of the repository, else bao on the PATH).
    #[arg(long, env = "LETTERBOX_BENCH_BAO")]
    bao: Option<PathBuf>,
    /// LiteLLM's virtualenv, made by bench/litellm/install.
    #[arg(long, env = "LETTERBOX_BENCH_LITELLM_VENV", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.litellm-venv"))]
    litellm_venv: PathBuf,
    /// LiteLLM's worker processes (--num_workers).
    #[arg(long, env = "LETTERBOX_BENCH_LITELLM_WORKERS", default_value_t = 2)]
    litellm_workers: usize,
    /// Worker threads of the stub's own runtime.
    #[arg(long, env = "LETTERBOX_BENCH_STUB_THREADS", default_value_t = 2)]
    stub_threads: usize,
    /// Ask direct and LiteLLM for streamed answers, as workers with LETTERBOX_LLM_STREAM=true
    /// ask the stub (default: whole answers, as workers ask by default).
    #[arg(long, env = "LETTERBOX_BENCH_PEER_STREAM")]
    peer_stream: bool,
    /// Where the JSON and the plots go.
    #[arg(long, env = "LETTERBOX_BENCH_OUT", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
    /// The files' name: <out>/<name>.json, <out>/<name>-<phase>.svg.
    #[arg(long, env = "LETTERBOX_BENCH_NAME", default_value = "bench")]
    name: String,
    /// More environment for the ingress and the workers, NAME=VALUE (repeatable), for
    /// experiments such as MALLOC_ARENA_MAX=2.
    #[arg(long, value_parser = parse_env)]
    fleet_env: Vec<(String, String)>,
    /// Keep the run's directory (logs, broker data) afterwards.
    #[arg(long, env = "LETTERBOX_BENCH_KEEP")]
    keep: bool,
}

impl Args {
    fn settings(self) -> anyhow::Result<Settings> {
        anyhow::ensure!(
            self.consumers > 0 && self.peak_consumers > 0,
            "--consumers and --peak-consumers must be at least 1"
        );
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        anyhow::ensure!(
            self.duration_secs > 0.0 && self.warmup_secs >= 0.0,
            "--duration-secs must be positive and --warmup-secs not negative"
        );
        anyhow::ensure!(
            self.rates
                .iter()
                .all(|rate| rate.is_finite() && *rate > 0.0),
            "--rates must be positive"
        );
        let bin_dir = letterbox_bench::bin_dir(self.bin_dir)?;
        let bao = letterbox_bench::bao_binary(self.bao);
        let mut systems = self.systems;
        if systems.contains(&System::Litellm)
            && let Err(error) = LiteLlm::executable(&self.litellm_venv)
        {
            tracing::warn!("LiteLLM is not installed, so it is not measured: {error:#}");
            systems.retain(|system| *system != System::Litellm);
        }
        let loads: Vec<Mode> = if self.rates.is_empty() {
            self.users
                .iter()
                .map(|&users| Mode::Closed { users })
                .collect()
        } else {
            self.rates.iter().map(|&rate| Mode::Open { rate }).collect()
        };
        let second = Duration::from_secs(1);
        let sweep = Phase {
            name: SWEEP.to_owned(),
            stub_latency: Duration::from_millis(self.stub_latency_ms),
            systems,
            loads,
            consumers: self.consumers,
            concurrency: self.concurrency,
            adaptive: self.adaptive_concurrency,
        };
        let phases = match self.plan {
            Plan::Sweep => vec![sweep],
            Plan::Targets => {
                let mut phases = vec![Phase {
                    stub_latency: second,
                    ..sweep.clone()
                }];
                phases.push(Phase {
                    name: PEAK.to_owned(),
                    stub_latency: Duration::ZERO,
                    systems: vec![System::Letterbox, System::Broker],
                    loads: self
                        .peak_users
                        .iter()
                        .map(|&users| Mode::Closed { users })
                        .collect(),
                    consumers: self.peak_consumers,
                    ..sweep.clone()
                });
                for consumers in [1, 2, 4] {
                    phases.push(Phase {
                        name: format!("{SCALE}-{consumers}"),
                        stub_latency: second,
                        systems: vec![System::Letterbox],
                        loads: vec![Mode::Closed {
                            users: self.scale_users,
                        }],
                        consumers,
                        concurrency: 50,
                        adaptive: false,
                    });
                }
                phases
            }
        };
        Ok(Settings {
            bin_dir,
            bao,
            litellm_venv: self.litellm_venv,
            litellm_workers: self.litellm_workers,
            work_dir: std::env::temp_dir(),
            out_dir: self.out,
            name: self.name,
            keep: self.keep,
            warmup: Duration::from_secs_f64(self.warmup_secs),
            duration: Duration::from_secs_f64(self.duration_secs),
            stub_threads: self.stub_threads,
            fleet_env: self.fleet_env,
            peer_stream: self.peer_stream,
            phases,
        })
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    letterbox::telemetry::init_tracing();
    letterbox::install_crypto_provider();
    let run = async {
        let settings = args.settings()?;
        // An interrupted run still stops what it started: dropping it stops it all.
        tokio::select! {
            report = load::run(settings) => report,
            () = letterbox::shutdown::signal() => Err(anyhow::anyhow!("interrupted")),
        }
    };
    match run.await {
        Ok(report) => {
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
