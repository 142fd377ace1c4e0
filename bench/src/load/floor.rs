//! The broker floor: Letterbox's broker path with no HTTP and no LLM, the least any request can
//! cost on this box.
//!
//! The requester is the ingress's own `JobSubmitter` (a confirmed, mandatory publish of a sealed
//! MessagePack job to a quorum queue declared with the same arguments, a private reply queue, the
//! one reply router); the workers are `JobStream` and `Replier` as the real workers use them
//! (prefetch, decrypt and decode the job, seal and publish the reply with confirms, then ack).
//! Sealing is the real transit envelope, with the producer's and the consumer's AppRoles. What a
//! worker does instead of calling the LLM is wait the stub's latency (the *hold*), then reply
//! with the letter the stub would have written; the hold stands in for the provider's time, so
//! the floor's overhead is end-to-end minus the hold, as it is minus the stub's time elsewhere.
//!
//! Every worker has its own two connections, as a worker process does; all of them run in the
//! bench's process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use letterbox::sealing::Sealer;
use letterbox::{Job, LetterOptions, Reply};
use letterbox_rabbitmq::{
    BrokerError, Connections, Endpoint, JobDelivery, JobStream, JobSubmitter, Replier, Topology,
};
use letterbox_vault::payload::TransitSealer;
use letterbox_vault::{SecretStore, VaultAuth, VaultSettings};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::stats::Outcome;
use super::target::Attempt;
use super::workload::Workload;
use crate::faults::fleet::AppRole;

/// The floor's own jobs queue, beside the fleet's.
pub const FLOOR_QUEUE: &str = "letterbox-floor.jobs";

const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the floor's broker and Vault are, and who it is there.
pub struct FloorConfig {
    pub amqp_url: String,
    pub vault_addr: String,
    pub producer: AppRole,
    pub consumer: AppRole,
    pub workers: usize,
    /// Jobs each worker holds at once (its prefetch), as `LETTERBOX_CONCURRENCY`.
    pub concurrency: u16,
    /// A request's deadline, as the ingress's `LETTERBOX_JOB_TIMEOUT_MS`.
    pub job_timeout: Duration,
}

pub struct Floor {
    submitter: JobSubmitter,
    workload: Arc<Workload>,
    /// The stand-in for the provider's time, in microseconds.
    hold_us: Arc<AtomicU64>,
    job_timeout: Duration,
    connections: Vec<Connections>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Floor {
    pub async fn start(config: FloorConfig, workload: Arc<Workload>) -> anyhow::Result<Self> {
        let endpoint = Endpoint::new(SecretString::from(config.amqp_url.clone()));
        let topology = Topology::new(FLOOR_QUEUE);
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let requester_sealer = sealer(&config.vault_addr, &config.producer).await?;
        let mut connections = Vec::new();

        let requester = Connections::open(&endpoint, "letterbox-bench floor", BROKER_TIMEOUT)
            .await
            .context("the floor could not connect to the broker")?;
        let submitter = JobSubmitter::start(
            &requester,
            Some(requester_sealer),
            topology.clone(),
            BROKER_TIMEOUT,
            &tracker,
            shutdown.clone(),
        )
        .await
        .context("the floor could not start its submitter")?;
        connections.push(requester);

        let hold_us = Arc::new(AtomicU64::new(0));
        let worker_sealer = sealer(&config.vault_addr, &config.consumer).await?;
        for index in 0..config.workers {
            let name = format!("letterbox-bench floor worker {}", index + 1);
            let worker = Connections::open(&endpoint, &name, BROKER_TIMEOUT)
                .await
                .context("a floor worker could not connect to the broker")?;
            let jobs = JobStream::open(
                &worker.consume,
                Arc::clone(&worker_sealer),
                &topology,
                config.concurrency,
                &name,
            )
            .await
            .context("a floor worker could not subscribe")?;
            let replier = Replier::open(
                &worker.publish,
                Arc::clone(&worker_sealer),
                BROKER_TIMEOUT,
                &topology,
            )
            .await?;
            tracker.spawn(work(
                jobs,
                replier,
                Arc::clone(&workload),
                Arc::clone(&hold_us),
                tracker.clone(),
                shutdown.clone(),
            ));
            connections.push(worker);
        }
        Ok(Self {
            submitter,
            workload,
            hold_us,
            job_timeout: config.job_timeout,
            connections,
            tracker,
            shutdown,
        })
    }

    /// What workers wait instead of calling the LLM, from now on.
    pub fn set_hold(&self, hold: Duration) {
        self.hold_us.store(
            u64::try_from(hold.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub async fn send(&self, serial: u64) -> Attempt {
        let created_at_us = letterbox::time::now_us();
        let job_timeout_ms = u64::try_from(self.job_timeout.as_millis()).unwrap_or(u64::MAX);
        let job = Job {
            id: Uuid::new_v4(),
            created_at_us,
            deadline_ms: created_at_us / 1000 + job_timeout_ms,
            resume: self.workload.resume(serial),
            job_description: self.workload.job_description().to_owned(),
            options: LetterOptions::default(),
            stream: false,
        };
        let pending = match self.submitter.submit(&job).await {
            Ok(pending) => pending,
            Err(error) => return refused(broker_code(&error)),
        };
        drop(job);
        match tokio::time::timeout(self.job_timeout, pending.wait()).await {
            Err(_) => refused("timeout"),
            Ok(Err(_lost)) => refused("reply_lost"),
            Ok(Ok(reply)) => match reply.outcome {
                letterbox::Outcome::Letter(letter) => Attempt {
                    outcome: Outcome::Letter,
                    reported_provider: Some(Duration::from_micros(letter.llm_us)),
                },
                letterbox::Outcome::Failed(failure) => refused(failure.code.as_str()),
                // The floor's jobs never ask for a stream.
                letterbox::Outcome::Chunk(_) => refused("unexpected_chunk"),
            },
        }
    }

    /// Stops the workers and closes every channel and connection.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(BROKER_TIMEOUT, self.tracker.wait()).await;
        self.submitter.close().await;
        for connections in &self.connections {
            connections.close().await;
        }
    }
}

fn refused(code: &str) -> Attempt {
    Attempt {
        outcome: Outcome::Refused {
            status: 0,
            code: code.to_owned(),
        },
        reported_provider: None,
    }
}

fn broker_code(error: &BrokerError) -> &'static str {
    match error {
        BrokerError::Rejected => "queue_full",
        BrokerError::Seal(_) => "seal_failed",
        _ => "broker_unavailable",
    }
}

/// The transit sealer a process with `role` uses.
async fn sealer(vault_addr: &str, role: &AppRole) -> anyhow::Result<Arc<dyn Sealer>> {
    let store = SecretStore::connect(VaultSettings {
        addr: vault_addr.to_owned(),
        ca_cert: None,
        auth: VaultAuth::AppRole {
            mount: "approle".to_owned(),
            role_id: role.role_id.clone(),
            secret_id: SecretString::from(role.secret_id.clone()),
        },
        timeout: Duration::from_secs(5),
        cache_ttl: Duration::from_secs(300),
        max_staleness: Duration::ZERO,
    })
    .await
    .context("the floor could not log in to Vault")?;
    let sealer = TransitSealer::new(Arc::new(store), "transit", "letterbox-payload");
    Ok(Arc::new(sealer))
}

/// One worker: each delivery is held, answered and acked on a task of its own; the prefetch
/// bounds how many are in hand.
async fn work(
    mut jobs: JobStream,
    replier: Replier,
    workload: Arc<Workload>,
    hold_us: Arc<AtomicU64>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => break,
            next = jobs.next() => next,
        };
        match delivery {
            Some(Ok(delivery)) => {
                let hold = Duration::from_micros(hold_us.load(Ordering::Relaxed));
                tracker.spawn(answer(
                    delivery,
                    replier.clone(),
                    Arc::clone(&workload),
                    hold,
                ));
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "A floor worker's subscription failed");
                break;
            }
            None => break,
        }
    }
    jobs.close().await;
    replier.close().await;
}

async fn answer(delivery: JobDelivery, replier: Replier, workload: Arc<Workload>, hold: Duration) {
    let (Ok(job), Some(reply_to), Some(correlation_id)) = (
        &delivery.job,
        delivery.reply_to.as_deref(),
        delivery.correlation_id.as_deref(),
    ) else {
        let _ = delivery.dead_letter().await;
        return;
    };
    let started = Instant::now();
    let queued_ms = letterbox::time::now_us().saturating_sub(job.created_at_us) / 1000;
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    let held = started.elapsed();
    let reply = Reply {
        job_id: job.id,
        outcome: letterbox::Outcome::Letter(letterbox::Letter {
            text: workload.letter().to_owned(),
            model: workload.model.clone(),
            queued_ms,
            llm_ms: u64::try_from(held.as_millis()).unwrap_or(u64::MAX),
            llm_us: u64::try_from(held.as_micros()).unwrap_or(u64::MAX),
        }),
    };
    let sent = replier
        .send(
            reply_to,
            correlation_id,
            delivery.wrapped_key.as_deref(),
            &reply,
        )
        .await;
    match sent {
        Ok(()) => {
            let _ = delivery.ack().await;
        }
        Err(error) => {
            tracing::warn!(%error, "A floor worker could not reply");
            let _ = delivery.requeue().await;
        }
    }
}
