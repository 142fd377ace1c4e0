//! The load generator behind `letterbox-bench`: Letterbox's real binaries, its broker path alone
//! (the floor), the stub LLM alone (direct) and LiteLLM's proxy, under the same load, on one box.
//!
//! A run is a list of **phases**. A phase fixes the stub's latency and the shape of the fleet
//! (workers, their concurrency); within it, each system is sent each load in turn (a **step**:
//! N users in a closed loop, or R requests per second in an open loop, after a warm-up). The
//! environment is the run's own, as the fault suite's is: a private RabbitMQ node and OpenBao
//! dev server, prepared with `letterbox-admin setup`, the stub in process behind a front that
//! times every answer (see [`clock`]), logs in a directory of the run's own.
//!
//! - `schedule.rs`: closed and open loops, the measured window, coordinated omission.
//! - `stats.rs`: percentiles, tallies, one step's result.
//! - `rss.rs`: the processes' memory.
//! - `clock.rs`: the provider's time, at the stub.
//! - `workload.rs`: what every request carries.
//! - `target.rs`: the systems, and what one request got.
//! - `floor.rs`: the broker floor.
//! - `litellm.rs`: the peer.
//! - `driver.rs`: one step.
//! - `report.rs`: table, JSON, plots, targets.

pub mod clock;
pub mod driver;
pub mod floor;
pub mod litellm;
pub mod report;
pub mod rss;
pub mod schedule;
pub mod stats;
pub mod target;
pub mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::faults::broker::PrivateBroker;
use crate::faults::fleet::{AppRole, Fleet, FleetConfig};
use crate::faults::vault::DevVault;
use crate::stub::{self, Latency, StubConfig, StubState};
use clock::{Front, ProviderClock};
use floor::{Floor, FloorConfig};
use litellm::LiteLlm;
use report::{PhaseResult, Report, Row};
use rss::{Scope, Watched};
use schedule::{Mode, Window};
use target::{HttpTarget, System, Target};
use workload::Workload;

/// How long the fleet may take to be ready after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A request's deadline at the ingress (its default), and the workers' LLM timeout under it.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
const LLM_TIMEOUT: Duration = Duration::from_secs(25);

/// The stub's accept queue (the kernel caps it at `net.core.somaxconn`, 4096 by default).
const ACCEPT_BACKLOG: u32 = 4096;

/// How long a client waits beyond the ingress's deadline before it gives up.
const CLIENT_MARGIN: Duration = Duration::from_secs(10);

/// One stub latency and fleet shape, and the loads each system gets under them.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub stub_latency: Duration,
    pub systems: Vec<System>,
    pub loads: Vec<Mode>,
    /// Worker processes (and the floor's workers).
    pub consumers: usize,
    /// `LETTERBOX_CONCURRENCY` of each worker (and the floor's prefetch).
    pub concurrency: u16,
    /// `LETTERBOX_ADAPTIVE_CONCURRENCY`.
    pub adaptive: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where `letterbox-producer`, `-consumer`, `-admin` and `-extract` are.
    pub bin_dir: PathBuf,
    pub bao: PathBuf,
    /// LiteLLM's virtualenv (`bench/litellm/install`).
    pub litellm_venv: PathBuf,
    /// LiteLLM's worker processes.
    pub litellm_workers: usize,
    /// The run makes its own directory in here (logs, the broker's data).
    pub work_dir: PathBuf,
    /// Where the JSON and the plots go.
    pub out_dir: PathBuf,
    /// The files' name: `<name>.json`, `<name>-<phase>.svg`.
    pub name: String,
    pub keep: bool,
    pub warmup: Duration,
    pub duration: Duration,
    /// Worker threads of the stub's own runtime.
    pub stub_threads: usize,
    /// Ask the peers (direct, LiteLLM) for streamed answers, as workers with
    /// `LETTERBOX_LLM_STREAM=true` ask the stub.
    pub peer_stream: bool,
    /// More variables for the ingress and the workers (an experiment's `MALLOC_ARENA_MAX`, …).
    pub fleet_env: Vec<(String, String)>,
    pub phases: Vec<Phase>,
}

impl Settings {
    fn summary(&self) -> serde_json::Value {
        json!({
            "bin_dir": self.bin_dir.display().to_string(),
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.duration.as_secs_f64(),
            "stub_threads": self.stub_threads,
            "peer_stream": self.peer_stream,
            "fleet_env": self.fleet_env.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>(),
            "litellm_workers": self.litellm_workers,
            "job_timeout_ms": JOB_TIMEOUT.as_millis() as u64,
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "load_average_at_start": std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            "phases": self.phases.iter().map(|phase| json!({
                "name": phase.name,
                "stub_latency_ms": phase.stub_latency.as_millis() as u64,
                "systems": phase.systems,
                "loads": phase.loads.iter().map(Mode::label).collect::<Vec<_>>(),
                "consumers": phase.consumers,
                "concurrency": phase.concurrency,
                "adaptive_concurrency": phase.adaptive,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Runs every phase and returns the report (also written as it goes: JSON after every phase,
/// a plot per phase).
pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&settings.out_dir)
        .with_context(|| format!("could not create {}", settings.out_dir.display()))?;
    let mut bench = Bench::start(&settings).await?;
    let mut report = Report {
        settings: settings.summary(),
        phases: Vec::new(),
        targets: Vec::new(),
    };
    let json_path = settings.out_dir.join(format!("{}.json", settings.name));
    let outcome = async {
        for phase in &settings.phases {
            let result = bench.phase(phase, &settings).await?;
            let plot = settings
                .out_dir
                .join(format!("{}-{}.svg", settings.name, phase.name));
            if result
                .rows
                .iter()
                .filter(|row| row.step.users.is_some())
                .count()
                > 1
            {
                report::write_plot(&result, &plot)?;
            }
            report.phases.push(result);
            report.targets = report::checks(&report.phases);
            report.settings["workload_bytes"] = bench.workload_sizes();
            report.write_json(&json_path)?;
        }
        anyhow::Ok(())
    }
    .await;
    let dir = bench.dir.clone();
    bench.stop().await;
    outcome?;
    if settings.keep {
        tracing::info!(dir = %dir.display(), "Logs kept");
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report)
}

/// The stub, in a runtime of its own so the load's tasks and the stub's timers do not queue
/// behind each other.
struct StubServer {
    front: Front,
    clock: ProviderClock,
    base_url: String,
    key: String,
    /// The state of the stub router now in use (what it was sent).
    state: StubState,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StubServer {
    fn start(key: String, latency: Duration, threads: usize) -> anyhow::Result<Self> {
        let clock = ProviderClock::default();
        let (router, state) = stub::router(stub_config(&key, latency))?;
        let front = Front::new(router, clock.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("stub")
            .enable_all()
            .build()
            .context("could not build the stub's runtime")?;
        // A deep accept queue: a thousand clients connecting at once must not overflow it, or
        // the kernel drops their SYNs and they retry a second later, which would be charged to
        // whichever system opened those connections (std's listener allows 128).
        // Made on the caller's runtime and handed to the stub's as a plain socket.
        let listener = {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            socket
                .listen(ACCEPT_BACKLOG)
                .context("could not bind the stub")?
                .into_std()?
        };
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = front.app();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("stub".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = async {
                        let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(|tcp| {
                            let _ = tcp.set_nodelay(true);
                        });
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stopped.cancelled_owned())
                            .await
                    };
                    if let Err(error) = served.await {
                        tracing::error!(%error, "The stub stopped");
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("could not start the stub's thread")?;
        Ok(Self {
            front,
            clock,
            base_url: format!("http://{addr}/v1"),
            key,
            state,
            stop,
            thread: Some(thread),
        })
    }

    fn set_latency(&mut self, latency: Duration) -> anyhow::Result<()> {
        let (router, state) = stub::router(stub_config(&self.key, latency))?;
        self.front.replace(router);
        self.state = state;
        Ok(())
    }

    fn stop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stub_config(key: &str, latency: Duration) -> StubConfig {
    StubConfig {
        latency: Latency::Fixed(latency),
        ..StubConfig::new(key)
    }
}

/// The fleet's shape: workers, their concurrency, adaptive or not.
type Shape = (usize, u16, bool);

/// Everything a run started. Fields drop in order: processes first, the broker last.
struct Bench {
    fleet: Option<(Shape, Fleet)>,
    floor: Option<((usize, u16), Arc<Floor>)>,
    litellm: Option<LiteLlm>,
    stub: StubServer,
    vault: DevVault,
    broker: PrivateBroker,
    producer: AppRole,
    consumer: AppRole,
    submit_token: String,
    workload: Arc<Workload>,
    /// Whether the workload's prompt is the one a worker really sent.
    prompt_captured: bool,
    serials: Arc<AtomicU64>,
    bin_dir: PathBuf,
    dir: PathBuf,
}

impl Bench {
    async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let dir = settings
            .work_dir
            .join(format!("letterbox-bench-{}", uuid::Uuid::new_v4().simple()));
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("could not create {}", log_dir.display()))?;
        let needs_fleet = settings
            .phases
            .iter()
            .any(|phase| phase.systems.contains(&System::Letterbox));
        if needs_fleet {
            for binary in [
                "letterbox-producer",
                "letterbox-consumer",
                "letterbox-admin",
            ] {
                let path = settings.bin_dir.join(binary);
                anyhow::ensure!(
                    path.is_file(),
                    "{} is missing: build the binaries first (cargo build --release --bins)",
                    path.display()
                );
            }
        }
        if settings
            .phases
            .iter()
            .any(|phase| phase.systems.contains(&System::Litellm))
        {
            LiteLlm::executable(&settings.litellm_venv)?;
        }
        tracing::info!("Starting a RabbitMQ node and an OpenBao dev server of the run's own");
        let (broker_dir, vault_log) = (dir.join("rabbitmq"), log_dir.join("bao.log"));
        let (broker, vault) = tokio::join!(
            PrivateBroker::start(&broker_dir),
            DevVault::start(&settings.bao, &vault_log)
        );
        let (broker, vault) = (broker?, vault?);
        let llm_key = format!("stub-bench-{}", uuid::Uuid::new_v4().simple());
        let provisioned = vault
            .provision_with_rate(&settings.bin_dir, &llm_key, "1000000/min")
            .await?;
        let first_latency = settings
            .phases
            .first()
            .map_or(Duration::ZERO, |phase| phase.stub_latency);
        let stub = StubServer::start(llm_key, first_latency, settings.stub_threads)?;
        Ok(Self {
            fleet: None,
            floor: None,
            litellm: None,
            stub,
            vault,
            broker,
            producer: provisioned.producer,
            consumer: provisioned.consumer,
            submit_token: provisioned.submit_token,
            workload: Arc::new(Workload::new(stub::DEFAULT_MODEL)),
            prompt_captured: false,
            // Serial 0 is the probe that captures the prompt.
            serials: Arc::new(AtomicU64::new(1)),
            bin_dir: settings.bin_dir.clone(),
            dir,
        })
    }

    /// The bench itself (load, stub, floor) and the broker, watched in every step: on a shared
    /// box their CPU use is part of the picture.
    fn always_watched(&self) -> Vec<Watched> {
        let mut watched = vec![
            Watched {
                name: "bench".to_owned(),
                pid: std::process::id(),
                scope: Scope::Process,
            },
            // Part of the bench's figure: the stub's own runtime.
            Watched {
                name: "bench:stub".to_owned(),
                pid: std::process::id(),
                scope: Scope::Threads("stub".to_owned()),
            },
        ];
        let pid_file = self.dir.join("rabbitmq").join("rabbitmq.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            watched.push(Watched {
                name: "rabbitmq".to_owned(),
                pid,
                scope: Scope::Tree,
            });
        }
        watched
    }

    fn workload_sizes(&self) -> serde_json::Value {
        let (system, user, letter) = self.workload.sizes();
        json!({
            "ingress_request": self.workload.ingress_body(1).to_string().len(),
            "prompt_system": system,
            "prompt_user": user,
            "letter": letter,
            "prompt_is_a_workers": self.prompt_captured,
        })
    }

    async fn phase(&mut self, phase: &Phase, settings: &Settings) -> anyhow::Result<PhaseResult> {
        tracing::info!(
            phase = %phase.name,
            stub_latency_ms = phase.stub_latency.as_millis() as u64,
            consumers = phase.consumers,
            concurrency = phase.concurrency,
            "Phase"
        );
        self.stub.set_latency(phase.stub_latency)?;
        let mut result = PhaseResult {
            name: phase.name.clone(),
            stub_latency_ms: phase.stub_latency.as_millis() as u64,
            consumers: phase.consumers,
            concurrency: phase.concurrency,
            adaptive_concurrency: phase.adaptive,
            rows: Vec::new(),
        };
        println!("{}", result.title());
        for &system in &phase.systems {
            let (target, mut watched) = self.prepare(system, phase, settings).await?;
            watched.extend(self.always_watched());
            let target = Arc::new(target);
            for &mode in &phase.loads {
                let step = driver::Step {
                    label: format!("{} {} {}", phase.name, system.name(), mode.label()),
                    mode,
                    window: Window::new(settings.warmup, settings.duration),
                    target: Arc::clone(&target),
                    clock: (system != System::Broker).then_some(&self.stub.clock),
                    watched: watched.clone(),
                    serials: Arc::clone(&self.serials),
                };
                let row = Row {
                    system,
                    step: driver::run(step).await,
                };
                println!("{}", report::render_row(&row));
                result.rows.push(row);
                if let Some((_, fleet)) = &mut self.fleet {
                    let crashes = fleet.reap()?;
                    anyhow::ensure!(
                        crashes.is_empty(),
                        "{} crashed: {}",
                        crashes
                            .iter()
                            .map(|crash| format!("{} ({})", crash.name, crash.status))
                            .collect::<Vec<_>>()
                            .join(", "),
                        crashes
                            .iter()
                            .flat_map(|crash| crash.log_tail.clone())
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                }
            }
        }
        println!();
        Ok(result)
    }

    /// Starts (or reshapes) what `system` needs and returns the target and the processes to
    /// watch.
    async fn prepare(
        &mut self,
        system: System,
        phase: &Phase,
        settings: &Settings,
    ) -> anyhow::Result<(Target, Vec<Watched>)> {
        let client_timeout = JOB_TIMEOUT + CLIENT_MARGIN;
        let connections = 1024;
        match system {
            System::Letterbox => {
                let fleet = self.fleet(phase, &settings.fleet_env).await?;
                let watched = fleet
                    .pids()
                    .into_iter()
                    .map(|(name, pid)| Watched {
                        name,
                        pid,
                        scope: Scope::Process,
                    })
                    .collect();
                let target = HttpTarget::new(
                    system,
                    settings.peer_stream,
                    &fleet.base_url(),
                    self.submit_token.clone(),
                    Arc::clone(&self.workload),
                    connections,
                    client_timeout,
                )?;
                Ok((Target::Http(target), watched))
            }
            System::Broker => {
                let floor = self.floor(phase).await?;
                floor.set_hold(phase.stub_latency);
                Ok((Target::Floor(floor), Vec::new()))
            }
            System::Direct => {
                let target = HttpTarget::new(
                    system,
                    settings.peer_stream,
                    &self.stub.base_url,
                    self.stub.key.clone(),
                    Arc::clone(&self.workload),
                    connections,
                    client_timeout,
                )?;
                Ok((Target::Http(target), Vec::new()))
            }
            System::Litellm => {
                if self.litellm.is_none() {
                    tracing::info!("Starting LiteLLM's proxy");
                    self.litellm = Some(
                        LiteLlm::start(
                            &settings.litellm_venv,
                            &self.dir,
                            &self.stub.base_url,
                            &self.stub.key,
                            stub::DEFAULT_MODEL,
                            settings.litellm_workers,
                        )
                        .await?,
                    );
                }
                let Some(proxy) = &self.litellm else {
                    unreachable!("started above")
                };
                let target = HttpTarget::new(
                    system,
                    settings.peer_stream,
                    &proxy.base_url(),
                    proxy.master_key().to_owned(),
                    Arc::clone(&self.workload),
                    connections,
                    client_timeout,
                )?;
                let watched = vec![Watched {
                    name: "litellm".to_owned(),
                    pid: proxy.pid(),
                    scope: Scope::Tree,
                }];
                Ok((Target::Http(target), watched))
            }
        }
    }

    /// The fleet in the phase's shape, started (or restarted) and ready.
    async fn fleet(
        &mut self,
        phase: &Phase,
        fleet_env: &[(String, String)],
    ) -> anyhow::Result<&Fleet> {
        let shape = (phase.consumers, phase.concurrency, phase.adaptive);
        if self.fleet.as_ref().is_some_and(|(now, _)| *now != shape)
            && let Some((_, fleet)) = self.fleet.take()
        {
            fleet.shutdown().await;
        }
        if self.fleet.is_none() {
            tracing::info!(
                consumers = phase.consumers,
                concurrency = phase.concurrency,
                "Starting the fleet"
            );
            let fleet = Fleet::start(FleetConfig {
                bin_dir: self.bin_dir.clone(),
                log_dir: self.dir.join("logs"),
                vault_addr: self.vault.addr().to_owned(),
                amqp_url: self.broker.amqp_url(),
                producer: self.producer.clone(),
                consumer: self.consumer.clone(),
                llm_base_url: self.stub.base_url.clone(),
                llm_model: stub::DEFAULT_MODEL.to_owned(),
                job_timeout: JOB_TIMEOUT,
                llm_timeout: LLM_TIMEOUT,
                secret_cache_ttl_secs: 300,
                shutdown_grace: Duration::from_secs(10),
                consumers: phase.consumers,
                extra_env: [
                    (
                        letterbox::env::CONCURRENCY.to_owned(),
                        phase.concurrency.to_string(),
                    ),
                    (
                        letterbox::env::ADAPTIVE_CONCURRENCY.to_owned(),
                        phase.adaptive.to_string(),
                    ),
                ]
                .into_iter()
                .chain(fleet_env.iter().cloned())
                .collect(),
            })?;
            self.fleet = Some((shape, fleet));
            self.wait_until_ready().await?;
        }
        match &self.fleet {
            Some((_, fleet)) => Ok(fleet),
            None => unreachable!("started above"),
        }
    }

    /// Waits until every process is ready and a request gets its letter; the first such letter
    /// gives the peers the prompt a worker really sends.
    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let Some((_, fleet)) = &self.fleet else {
            return Ok(());
        };
        let probe = HttpTarget::new(
            System::Letterbox,
            false,
            &fleet.base_url(),
            self.submit_token.clone(),
            Arc::clone(&self.workload),
            1,
            JOB_TIMEOUT + CLIENT_MARGIN,
        )?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let not_ready = fleet.not_ready().await;
            if not_ready.is_empty() {
                let attempt = probe.send(0).await;
                if attempt.outcome == stats::Outcome::Letter {
                    self.stub.clock.clear();
                    if !self.prompt_captured {
                        self.capture_prompt();
                    }
                    return Ok(());
                }
                last = format!("a probe got {:?}", attempt.outcome);
            } else {
                last = format!("not ready: {}", not_ready.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::bail!(
            "the fleet was not ready within {} s ({last}); logs in {}",
            READY_TIMEOUT.as_secs(),
            self.dir.join("logs").display()
        )
    }

    /// The prompt of the probe (serial 0), as the stub received it.
    fn capture_prompt(&mut self) {
        let sent = clock::marker(0);
        let requests = self.stub.state.requests();
        if let Some(request) = requests.iter().rev().find(|r| r.user.contains(&sent)) {
            self.workload = Arc::new(Workload::with_prompt(
                stub::DEFAULT_MODEL,
                request.system.clone(),
                &request.user,
                &sent,
            ));
            self.prompt_captured = true;
        } else {
            tracing::warn!("The probe's prompt did not reach the stub; the peers get a stand-in");
        }
    }

    /// The floor in the phase's shape.
    async fn floor(&mut self, phase: &Phase) -> anyhow::Result<Arc<Floor>> {
        let shape = (phase.consumers, phase.concurrency);
        if self.floor.as_ref().is_some_and(|(now, _)| *now != shape)
            && let Some((_, floor)) = self.floor.take()
        {
            stop_floor(floor).await;
        }
        if self.floor.is_none() {
            let floor = Floor::start(
                FloorConfig {
                    amqp_url: self.broker.amqp_url(),
                    vault_addr: self.vault.addr().to_owned(),
                    producer: self.producer.clone(),
                    consumer: self.consumer.clone(),
                    workers: phase.consumers,
                    concurrency: phase.concurrency,
                    job_timeout: JOB_TIMEOUT,
                },
                Arc::clone(&self.workload),
            )
            .await?;
            self.floor = Some((shape, Arc::new(floor)));
        }
        match &self.floor {
            Some((_, floor)) => Ok(Arc::clone(floor)),
            None => unreachable!("started above"),
        }
    }

    /// Stops what the run started: the processes, then (on drop) the stub, Vault and broker.
    async fn stop(mut self) {
        if let Some((_, fleet)) = self.fleet.take() {
            fleet.shutdown().await;
        }
        if let Some((_, floor)) = self.floor.take() {
            stop_floor(floor).await;
        }
        if let Some(proxy) = self.litellm.take() {
            proxy.stop().await;
        }
        self.stub.stop();
    }
}

async fn stop_floor(floor: Arc<Floor>) {
    match Arc::try_unwrap(floor) {
        Ok(floor) => floor.stop().await,
        Err(_) => tracing::warn!("The floor is still in use; dropping it"),
    }
}
