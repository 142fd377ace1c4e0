//! The Letterbox processes under test: one ingress and a pool of workers, the real binaries, each
//! with its own AppRole credentials and a log file in the suite's directory.
//!
//! A process the suite signals is taken out of the fleet first, so whatever is still in the fleet
//! and has exited did so on its own: that is a crash.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use letterbox::env;
use tokio::process::{Child, Command};

use super::{free_port, send_signal};

/// How long the fleet waits for a process it stops with SIGTERM beyond its shutdown grace.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// The lines of a crashed process's log quoted as evidence.
const LOG_TAIL_LINES: usize = 3;

/// AppRole credentials of one process, from `letterbox-admin setup`.
#[derive(Clone)]
pub struct AppRole {
    pub role_id: String,
    pub secret_id: String,
}

/// Everything a process of the fleet is started with.
pub struct FleetConfig {
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
    pub vault_addr: String,
    pub amqp_url: String,
    pub producer: AppRole,
    pub consumer: AppRole,
    pub llm_base_url: String,
    pub llm_model: String,
    pub job_timeout: Duration,
    pub llm_timeout: Duration,
    pub secret_cache_ttl_secs: u64,
    pub shutdown_grace: Duration,
    pub consumers: usize,
    /// More variables for every process (a load test's queue name, concurrency, …).
    pub extra_env: Vec<(String, String)>,
}

/// One running process.
pub struct Service {
    pub name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
    /// Where its `/readyz` answers: the API of the ingress, the metrics address of a worker.
    probe: SocketAddr,
}

/// A process that exited without being asked to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Crash {
    pub name: String,
    pub status: String,
    pub log_tail: Vec<String>,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Sends `signal` (`TERM`, `KILL`, …) to the process.
    pub async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        send_signal(self.pid, signal).await
    }

    /// Waits for the process to exit, up to `timeout`; `None` when it is still running (it is
    /// then killed, so nothing outlives the suite).
    pub async fn wait(mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                Ok(Some(status.with_context(|| {
                    format!("could not wait for {}", self.name)
                })?))
            }
            Err(_) => {
                let _ = self.child.kill().await;
                Ok(None)
            }
        }
    }

    fn crash(&self, status: ExitStatus) -> Crash {
        Crash {
            name: self.name.clone(),
            status: describe(status),
            log_tail: log_tail(&self.log, LOG_TAIL_LINES),
        }
    }
}

/// `exit 0`, `exit 1`, `signal 9`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown".to_owned(),
    }
}

/// The warnings and errors a process logged after it was told to shut down (after its last
/// "Shutting down" line), at most `lines` of them.
pub fn complaints_after_shutdown(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all
        .iter()
        .rposition(|line| line.contains("Shutting down"))
        .map_or(all.len(), |index| index + 1);
    all[from..]
        .iter()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .take(lines)
        .map(|line| (*line).to_owned())
        .collect()
}

/// The last `lines` non-empty lines of a log, for a report.
pub fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut tail: Vec<String> = text
        .lines()
        .rev()
        .filter(|line| !line.trim().is_empty())
        .take(lines)
        .map(str::to_owned)
        .collect();
    tail.reverse();
    tail
}

pub struct Fleet {
    config: FleetConfig,
    http_addr: SocketAddr,
    producer: Service,
    consumers: Vec<Service>,
    /// Names are never reused, so each log file belongs to one process.
    consumers_started: usize,
    http: reqwest::Client,
}

impl Fleet {
    /// Starts the ingress and the workers; does not wait for them to be ready.
    pub fn start(config: FleetConfig) -> anyhow::Result<Self> {
        let http_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let producer = spawn_producer(&config, http_addr)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("could not build the readiness client")?;
        let mut fleet = Self {
            config,
            http_addr,
            producer,
            consumers: Vec::new(),
            consumers_started: 0,
            http,
        };
        for _ in 0..fleet.config.consumers {
            fleet.spawn_consumer()?;
        }
        Ok(fleet)
    }

    /// The name and process id of every process of the fleet, the ingress first.
    pub fn pids(&self) -> Vec<(String, u32)> {
        std::iter::once(&self.producer)
            .chain(&self.consumers)
            .map(|service| (service.name.clone(), service.pid))
            .collect()
    }

    /// The ingress's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn shutdown_grace(&self) -> Duration {
        self.config.shutdown_grace
    }

    /// Starts one more worker and returns its name.
    pub fn spawn_consumer(&mut self) -> anyhow::Result<String> {
        self.consumers_started += 1;
        let name = format!("consumer-{}", self.consumers_started);
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = &self.config;
        let mut command = base_command(config, "letterbox-consumer", &config.consumer);
        command
            .env(env::LLM_BASE_URL, &config.llm_base_url)
            .env(env::LLM_MODEL, &config.llm_model)
            .env(env::METRICS_ADDR, metrics.to_string())
            .env(
                env::LLM_TIMEOUT_MS,
                config.llm_timeout.as_millis().to_string(),
            )
            .env(
                env::SECRET_CACHE_TTL_SECS,
                config.secret_cache_ttl_secs.to_string(),
            );
        let service = spawn(command, &name, &config.log_dir, metrics)?;
        self.consumers.push(service);
        Ok(name)
    }

    /// Takes the `index`-th worker out of the fleet, so its exit is not a crash, and returns it
    /// for the caller to signal and wait for.
    pub fn take_consumer(&mut self, index: usize) -> anyhow::Result<Service> {
        anyhow::ensure!(
            index < self.consumers.len(),
            "there is no consumer #{index}"
        );
        Ok(self.consumers.remove(index))
    }

    /// The processes that exited on their own since the last call; a crashed ingress is started
    /// again at once (on the same address), crashed workers are left for [`Fleet::heal`].
    pub fn reap(&mut self) -> anyhow::Result<Vec<Crash>> {
        let mut crashes = Vec::new();
        let mut kept = Vec::with_capacity(self.consumers.len());
        for mut consumer in self.consumers.drain(..) {
            match consumer.child.try_wait()? {
                Some(status) => crashes.push(consumer.crash(status)),
                None => kept.push(consumer),
            }
        }
        self.consumers = kept;
        if let Some(status) = self.producer.child.try_wait()? {
            crashes.push(self.producer.crash(status));
            self.producer = spawn_producer(&self.config, self.http_addr)?;
        }
        Ok(crashes)
    }

    /// Starts workers until the fleet has as many as it started with.
    pub fn heal(&mut self) -> anyhow::Result<Vec<String>> {
        let mut started = Vec::new();
        while self.consumers.len() < self.config.consumers {
            started.push(self.spawn_consumer()?);
        }
        Ok(started)
    }

    /// The processes whose `/readyz` does not answer 200 now.
    pub async fn not_ready(&self) -> Vec<String> {
        let mut waiting = Vec::new();
        for service in std::iter::once(&self.producer).chain(&self.consumers) {
            let ready = self
                .http
                .get(format!("http://{}/readyz", service.probe))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if !ready {
                waiting.push(service.name.clone());
            }
        }
        waiting
    }

    /// Stops every process with SIGTERM, the workers first (they reply through the ingress's
    /// broker, not through the ingress), and reports how each one ended.
    pub async fn shutdown(self) -> Vec<(String, String)> {
        let timeout = self.config.shutdown_grace + STOP_MARGIN;
        let mut ended = Vec::new();
        let services = self.consumers.into_iter().chain([self.producer]);
        for service in services {
            let name = service.name.clone();
            let outcome = match service.signal("TERM").await {
                Ok(()) => match service.wait(timeout).await {
                    Ok(Some(status)) => describe(status),
                    Ok(None) => format!("still running {} ms after SIGTERM", timeout.as_millis()),
                    Err(error) => format!("{error:#}"),
                },
                Err(error) => format!("{error:#}"),
            };
            ended.push((name, outcome));
        }
        ended
    }
}

fn spawn_producer(config: &FleetConfig, http_addr: SocketAddr) -> anyhow::Result<Service> {
    let mut command = base_command(config, "letterbox-producer", &config.producer);
    command.env(env::HTTP_ADDR, http_addr.to_string()).env(
        env::JOB_TIMEOUT_MS,
        config.job_timeout.as_millis().to_string(),
    );
    spawn(command, "producer", &config.log_dir, http_addr)
}

/// A binary of the fleet with a clean environment: nothing of the caller's broker or Vault (a
/// shell that ran `script/bootstrap` exports the shared ones) may leak in.
fn base_command(config: &FleetConfig, binary: &str, role: &AppRole) -> Command {
    let mut command = Command::new(config.bin_dir.join(binary));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(env::VAULT_ADDR, &config.vault_addr)
        .env(env::VAULT_ROLE_ID, &role.role_id)
        .env(env::VAULT_SECRET_ID, &role.secret_id)
        .env(env::AMQP_URL, &config.amqp_url)
        .env(
            env::SHUTDOWN_GRACE_MS,
            config.shutdown_grace.as_millis().to_string(),
        )
        .envs(config.extra_env.iter().map(|(name, value)| (name, value)));
    command
}

fn spawn(
    mut command: Command,
    name: &str,
    log_dir: &Path,
    probe: SocketAddr,
) -> anyhow::Result<Service> {
    let log = log_dir.join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("could not open {}", log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        // A suite that fails or is interrupted must not leave processes behind.
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("could not start {name}: are the binaries built?"))?;
    let pid = child
        .id()
        .with_context(|| format!("{name} exited before it could be watched"))?;
    tracing::debug!(name, pid, log = %log.display(), "Started a process");
    Ok(Service {
        name: name.to_owned(),
        child,
        pid,
        log,
        probe,
    })
}
