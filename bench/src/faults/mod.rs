//! The fault-injection suite: the real ingress, workers and admin tool under steady load, on a
//! RabbitMQ node and an OpenBao dev server of the suite's own (so it may break them), with the
//! stub LLM in process. Each scenario starts from a healthy system, breaks one thing while the
//! clients keep sending, and counts what the clients got; between scenarios the suite puts the
//! system back (LLM failures off, Vault thawed, crashed or stopped workers replaced) and waits
//! until every process is ready, the jobs queue is empty and a request gets its letter.
//!
//! - `mod.rs`: settings, start-up and the loop over scenarios.
//! - `broker.rs`: the private RabbitMQ node (start, restart, stop; raw publishes, queue depths).
//! - `vault.rs`: the private OpenBao dev server (start, freeze, thaw) and its provisioning.
//! - `fleet.rs`: the producer and consumer processes (spawn, signal, crashes, readiness).
//! - `load.rs`: the clients and what each request got.
//! - `scenario.rs`: what each scenario breaks, and when.
//! - `report.rs`: the table, as text and JSON.

pub(crate) mod broker;
pub(crate) mod fleet;
mod load;
mod report;
mod scenario;
pub(crate) mod vault;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::stub::{self, Latency, StubConfig, StubHandle};
use broker::PrivateBroker;
use fleet::{Fleet, FleetConfig};
use load::{Answer, Load};
pub use report::{Report, Row};
pub use scenario::{Scenario, Timing};
use vault::DevVault;

/// How long the system may take to be healthy again after a scenario.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything the suite can be told.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where `letterbox-producer`, `-consumer`, `-admin` and `-extract` are.
    pub bin_dir: PathBuf,
    /// The OpenBao binary.
    pub bao: PathBuf,
    /// The suite makes its own directory in here (logs, the broker's data).
    pub work_dir: PathBuf,
    /// Keep the suite's directory even when every scenario passed.
    pub keep: bool,
    pub scenarios: Vec<Scenario>,
    pub clients: usize,
    pub consumers: usize,
    pub timing: Timing,
    /// The ingress's `LETTERBOX_JOB_TIMEOUT_MS`: a request's deadline.
    pub job_timeout: Duration,
    /// The workers' `LETTERBOX_LLM_TIMEOUT_MS`.
    pub llm_timeout: Duration,
    /// The workers' `LETTERBOX_SECRET_CACHE_TTL_SECS`: short, so a Vault outage is felt.
    pub secret_cache_ttl_secs: u64,
    /// `LETTERBOX_SHUTDOWN_GRACE_MS` of every process.
    pub shutdown_grace: Duration,
    pub latency_median: Duration,
    pub latency_sigma: f64,
}

impl Settings {
    /// The full suite: 20 clients, 20 s per scenario, Vault frozen for 10 s.
    pub fn full(bin_dir: PathBuf, bao: PathBuf) -> Self {
        Self {
            bin_dir,
            bao,
            work_dir: std::env::temp_dir(),
            keep: false,
            scenarios: Scenario::ALL.to_vec(),
            clients: 20,
            consumers: 3,
            timing: Timing {
                duration: Duration::from_secs(20),
                fault_at: Duration::from_secs(6),
                tail: Duration::from_secs(5),
                broker_down: Duration::from_secs(5),
                vault_pause: Duration::from_secs(10),
                replace_after: Duration::from_secs(3),
            },
            job_timeout: Duration::from_millis(8000),
            llm_timeout: Duration::from_millis(4000),
            secret_cache_ttl_secs: 2,
            shutdown_grace: Duration::from_secs(10),
            latency_median: Duration::from_millis(300),
            latency_sigma: 0.5,
        }
    }

    /// The quick version `script/test` runs: 8 clients, 5 s per scenario.
    pub fn short(bin_dir: PathBuf, bao: PathBuf) -> Self {
        Self {
            clients: 8,
            timing: Timing {
                duration: Duration::from_secs(5),
                fault_at: Duration::from_millis(1500),
                tail: Duration::from_secs(2),
                broker_down: Duration::from_secs(2),
                vault_pause: Duration::from_secs(4),
                replace_after: Duration::from_secs(2),
            },
            ..Self::full(bin_dir, bao)
        }
    }

    fn summary(&self) -> serde_json::Value {
        let ms = |duration: Duration| duration.as_millis() as u64;
        json!({
            "clients": self.clients,
            "consumers": self.consumers,
            "duration_ms": ms(self.timing.duration),
            "fault_at_ms": ms(self.timing.fault_at),
            "tail_ms": ms(self.timing.tail),
            "broker_down_ms": ms(self.timing.broker_down),
            "vault_pause_ms": ms(self.timing.vault_pause),
            "replace_after_ms": ms(self.timing.replace_after),
            "job_timeout_ms": ms(self.job_timeout),
            "hung_after_ms": ms(self.job_timeout + load::HUNG_GRACE),
            "llm_timeout_ms": ms(self.llm_timeout),
            "secret_cache_ttl_secs": self.secret_cache_ttl_secs,
            "shutdown_grace_ms": ms(self.shutdown_grace),
            "llm_latency": { "median_ms": ms(self.latency_median), "sigma": self.latency_sigma },
        })
    }
}

/// Runs every scenario of `settings` and reports; `Err` only when the suite could not start.
pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    let mut report = Report::new(settings.summary());
    let mut suite = Suite::start(&settings).await?;
    tracing::info!(dir = %suite.dir.display(), "The system is up; running the scenarios");
    for &scenario in &settings.scenarios {
        tracing::info!(scenario = %scenario.id(), "{}", scenario.title());
        match suite.scenario(scenario).await {
            Ok((row, healthy)) => {
                tracing::info!(
                    scenario = %row.scenario,
                    sent = row.sent,
                    letters = row.letters,
                    lost = row.lost,
                    hung = row.hung,
                    passed = row.passed,
                    "Scenario done"
                );
                report.scenarios.push(row);
                if !healthy {
                    report.aborted = Some(format!(
                        "the system was not healthy again within {} s after {}",
                        RECOVERY_TIMEOUT.as_secs(),
                        scenario.id()
                    ));
                    break;
                }
            }
            Err(error) => {
                report.aborted = Some(format!("{}: {error:#}", scenario.id()));
                break;
            }
        }
    }
    let dir = suite.dir.clone();
    report.teardown = suite.finish().await;
    report.conclude();
    if report.passed && !settings.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        tracing::info!(dir = %dir.display(), "Logs kept");
    }
    Ok(report)
}

/// The running system. Fields drop in order: the processes first, the broker last.
struct Suite {
    fleet: Fleet,
    stub: StubHandle,
    vault: DevVault,
    broker: PrivateBroker,
    load: Load,
    timing: Timing,
    dir: PathBuf,
    /// Every job id answered so far, to find one answered twice.
    seen: HashMap<String, usize>,
}

impl Suite {
    async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let dir = settings.work_dir.join(format!(
            "letterbox-faults-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("could not create {}", log_dir.display()))?;
        for binary in [
            "letterbox-producer",
            "letterbox-consumer",
            "letterbox-admin",
            "letterbox-extract",
        ] {
            let path = settings.bin_dir.join(binary);
            anyhow::ensure!(
                path.is_file(),
                "{} is missing: build the binaries first (cargo build --bins)",
                path.display()
            );
        }

        tracing::info!("Starting a RabbitMQ node and an OpenBao dev server of the suite's own");
        let (broker_dir, vault_log) = (dir.join("rabbitmq"), log_dir.join("bao.log"));
        let (broker, vault) = tokio::join!(
            PrivateBroker::start(&broker_dir),
            DevVault::start(&settings.bao, &vault_log)
        );
        let (broker, vault) = (broker?, vault?);
        let llm_key = format!("stub-faults-{}", uuid::Uuid::new_v4().simple());
        let provisioned = vault.provision(&settings.bin_dir, &llm_key).await?;

        let stub = stub::spawn(
            StubConfig {
                latency: Latency::LogNormal {
                    median: settings.latency_median,
                    sigma: settings.latency_sigma,
                },
                ..StubConfig::new(llm_key)
            },
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await?;
        let fleet = Fleet::start(FleetConfig {
            bin_dir: settings.bin_dir.clone(),
            log_dir,
            vault_addr: vault.addr().to_owned(),
            amqp_url: broker.amqp_url(),
            producer: provisioned.producer,
            consumer: provisioned.consumer,
            llm_base_url: stub.base_url.clone(),
            llm_model: stub::DEFAULT_MODEL.to_owned(),
            job_timeout: settings.job_timeout,
            llm_timeout: settings.llm_timeout,
            secret_cache_ttl_secs: settings.secret_cache_ttl_secs,
            shutdown_grace: settings.shutdown_grace,
            consumers: settings.consumers,
            extra_env: Vec::new(),
        })?;
        let load = Load::new(
            &fleet.base_url(),
            provisioned.submit_token,
            settings.clients,
            settings.job_timeout,
        )?;
        let mut suite = Self {
            fleet,
            stub,
            vault,
            broker,
            load,
            timing: settings.timing,
            dir,
            seen: HashMap::new(),
        };
        let crashes = suite.restore().await?;
        if let Some(crash) = crashes.first() {
            anyhow::bail!(
                "{} exited at start-up ({}): {}",
                crash.name,
                crash.status,
                crash.log_tail.join(" | ")
            );
        }
        Ok(suite)
    }

    /// Runs one scenario under load, then restores the system; the flag is false when the
    /// system could not be made healthy again.
    async fn scenario(&mut self, scenario: Scenario) -> anyhow::Result<(Row, bool)> {
        let stop = CancellationToken::new();
        let calls_before = self.stub.request_count();
        let started = Instant::now();
        let timing = self.timing;
        let Self {
            fleet,
            stub,
            vault,
            broker,
            load,
            ..
        } = self;
        let drive = async {
            tokio::time::sleep(timing.fault_at).await;
            let targets = scenario::Targets {
                fleet,
                broker,
                vault,
                stub,
                started,
            };
            let effects = scenario::inject(scenario, targets, timing).await;
            let end = (started + timing.duration).max(Instant::now() + timing.tail);
            tokio::time::sleep_until(end.into()).await;
            stop.cancel();
            effects
        };
        let (outcomes, effects) = tokio::join!(load.run(&stop), drive);
        let load_ended = Instant::now();

        let mut row = Row::tally(
            &scenario.id(),
            scenario.title(),
            &outcomes,
            self.load.deadline(),
            &mut self.seen,
        );
        row.llm_calls = self.stub.request_count().saturating_sub(calls_before);
        match effects {
            Ok(effects) => {
                row.notes.extend(effects.notes);
                for (what, ok) in effects.checks {
                    row.check(what, ok);
                }
                if let Some(probe) = effects.poison {
                    row.notes.extend(probe.finish(&self.broker).await);
                }
            }
            Err(error) => row.check(format!("inject the fault: {error:#}"), false),
        }
        row.crashes = self.fleet.reap()?;
        let healthy = match self.restore().await {
            Ok(crashes) => {
                row.crashes.extend(crashes);
                row.note(format!(
                    "healthy again {:.1} s after the load stopped",
                    load_ended.elapsed().as_secs_f64()
                ));
                true
            }
            Err(error) => {
                row.check(format!("healthy again: {error:#}"), false);
                false
            }
        };
        row.conclude();
        Ok((row, healthy))
    }

    /// Puts the system back to healthy: LLM failures off, Vault thawed, the broker up, crashed
    /// processes replaced; then waits until every process is ready, the jobs queue is empty and
    /// a request gets its own letter. Returns the crashes found on the way.
    async fn restore(&mut self) -> anyhow::Result<Vec<fleet::Crash>> {
        self.stub.set_failure(None)?;
        self.vault.resume().await?;
        let mut crashes = Vec::new();
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        let mut waiting_for;
        loop {
            crashes.extend(self.fleet.reap()?);
            let started = self.fleet.heal()?;
            if !started.is_empty() {
                tracing::info!(?started, "Started workers in place of the missing ones");
            }
            let not_ready = self.fleet.not_ready().await;
            waiting_for = if not_ready.is_empty() {
                match self.broker.ready_messages(scenario::JOBS_QUEUE).await {
                    Ok(0) => match self.load.one().await.answer {
                        Answer::Letter { own: true, .. } => return Ok(crashes),
                        other => format!("a probe request got {other:?}"),
                    },
                    Ok(depth) => format!("{depth} jobs still queued"),
                    Err(error) => format!("{error:#}"),
                }
            } else {
                format!("not ready: {}", not_ready.join(", "))
            };
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::bail!(
            "still unhealthy after {} s ({waiting_for})",
            RECOVERY_TIMEOUT.as_secs()
        )
    }

    /// Stops every process with SIGTERM and says how each ended; the stub, Vault and the broker
    /// (still up while the processes drain) stop when the rest of the suite drops.
    async fn finish(self) -> Vec<report::Check> {
        let Self { fleet, .. } = self;
        fleet
            .shutdown()
            .await
            .into_iter()
            .map(|(name, ended)| report::Check {
                ok: ended == "exit 0",
                what: format!("{name}: {ended} on SIGTERM at the end"),
            })
            .collect()
    }
}

/// A free loopback port (bound and released; another process may take it in between, which is
/// acceptable for a test tool).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .context("could not find a free port")?
        .local_addr()?
        .port())
}

/// Waits until `port` on loopback accepts connections.
pub(crate) async fn wait_for_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("nothing listens on {addr} after {} s", timeout.as_secs())
}

/// Sends `signal` (`TERM`, `KILL`, `STOP`, …) to `pid` with kill(1).
pub(crate) async fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .context("could not run kill")?;
    anyhow::ensure!(status.success(), "kill -s {signal} {pid} failed");
    Ok(())
}
