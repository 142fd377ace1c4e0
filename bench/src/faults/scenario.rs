//! What each scenario breaks, and when. A scenario's fault starts `fault_at` into the load; the
//! load goes on until the scenario's duration is over and at least `tail` after the fault has
//! run its course, so the clients also see the recovery.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};

use super::broker::{PrivateBroker, publish_raw};
use super::fleet::{Fleet, complaints_after_shutdown, describe};
use super::vault::DevVault;
use crate::stub::{Failure, RetryAfter, StubHandle};

/// The jobs queue the processes use (the default `LETTERBOX_JOBS_QUEUE`).
pub const JOBS_QUEUE: &str = "letterbox.jobs";
const DEAD_LETTER_QUEUE: &str = "letterbox.jobs.dead";

/// Malformed messages published of each kind in `poison-message`.
const POISON_PER_KIND: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// No fault: what the load gets from a healthy system.
    Baseline,
    /// SIGKILL one worker; start a replacement a few seconds later.
    KillConsumer,
    /// Stop and start the RabbitMQ application.
    RestartBroker,
    /// Freeze Vault (SIGSTOP), then thaw it.
    PauseVault,
    /// The LLM answers 429 on one call in three, with each form of Retry-After in turn.
    #[value(name = "llm-429")]
    #[serde(rename = "llm-429")]
    Llm429,
    /// The LLM answers 500 on one call in three.
    #[value(name = "llm-500")]
    #[serde(rename = "llm-500")]
    Llm500,
    /// The LLM never answers one call in five.
    LlmHang,
    /// The LLM cuts one stream in three short (no finish_reason, no [DONE]).
    LlmCutStream,
    /// The LLM ends one stream in three with an error event after its 200.
    LlmErrorEvent,
    /// SIGTERM one worker: it must finish its jobs and exit 0.
    TermConsumer,
    /// Publish malformed messages straight onto the jobs queue.
    PoisonMessage,
}

impl Scenario {
    pub const ALL: [Self; 11] = [
        Self::Baseline,
        Self::KillConsumer,
        Self::RestartBroker,
        Self::PauseVault,
        Self::Llm429,
        Self::Llm500,
        Self::LlmHang,
        Self::LlmCutStream,
        Self::LlmErrorEvent,
        Self::TermConsumer,
        Self::PoisonMessage,
    ];

    pub fn id(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Baseline => "no fault",
            Self::KillConsumer => "(a) SIGKILL one of the workers, replace it a few seconds later",
            Self::RestartBroker => "(b) restart the broker (rabbitmqctl stop_app, start_app)",
            Self::PauseVault => "(c) Vault stops answering (SIGSTOP), then comes back (SIGCONT)",
            Self::Llm429 => "(d) the LLM answers 429 with Retry-After on 1 call in 3",
            Self::Llm500 => "(d) the LLM answers 500 on 1 call in 3",
            Self::LlmHang => "(d) the LLM never answers 1 call in 5",
            Self::LlmCutStream => "(d) the LLM cuts 1 stream in 3 short",
            Self::LlmErrorEvent => "(d) the LLM sends an error event after its 200 on 1 call in 3",
            Self::TermConsumer => "(e) SIGTERM one worker mid-load; it must exit 0",
            Self::PoisonMessage => "(f) malformed messages published straight onto the jobs queue",
        }
    }
}

/// When things happen in a scenario.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub duration: Duration,
    pub fault_at: Duration,
    pub tail: Duration,
    pub broker_down: Duration,
    pub vault_pause: Duration,
    pub replace_after: Duration,
}

/// What a fault acts on.
pub struct Targets<'a> {
    pub fleet: &'a mut Fleet,
    pub broker: &'a PrivateBroker,
    pub vault: &'a mut DevVault,
    pub stub: &'a StubHandle,
    /// When the load started: notes give times from here.
    pub started: Instant,
}

impl Targets<'_> {
    fn at(&self) -> String {
        format!("{:.1} s", self.started.elapsed().as_secs_f64())
    }
}

/// What the fault left to report.
#[derive(Default)]
pub struct Effects {
    pub notes: Vec<String>,
    pub checks: Vec<(String, bool)>,
    /// Set by `poison-message`: read once the load is over.
    pub poison: Option<PoisonProbe>,
}

/// Runs `scenario`'s fault to its end (the broker back, Vault thawed, a replacement started…);
/// LLM failures stay switched on until the suite restores the system.
pub async fn inject(
    scenario: Scenario,
    targets: Targets<'_>,
    timing: Timing,
) -> anyhow::Result<Effects> {
    let mut effects = Effects::default();
    let notes = &mut effects.notes;
    match scenario {
        Scenario::Baseline => {}
        Scenario::KillConsumer => {
            let victim = targets.fleet.take_consumer(0)?;
            let (name, pid) = (victim.name.clone(), victim.pid());
            victim.signal("KILL").await?;
            notes.push(format!("{}: SIGKILL {name} (pid {pid})", targets.at()));
            let status = victim.wait(Duration::from_secs(10)).await?;
            anyhow::ensure!(status.is_some(), "{name} survived SIGKILL");
            tokio::time::sleep(timing.replace_after).await;
            let started = targets.fleet.spawn_consumer()?;
            notes.push(format!("{}: started {started} in its place", targets.at()));
        }
        Scenario::RestartBroker => {
            notes.push(format!(
                "{}: rabbitmqctl -n {} stop_app",
                targets.at(),
                targets.broker.node()
            ));
            targets.broker.stop_app().await?;
            notes.push(format!("{}: broker stopped", targets.at()));
            tokio::time::sleep(timing.broker_down).await;
            targets.broker.start_app().await?;
            notes.push(format!(
                "{}: broker accepting connections again",
                targets.at()
            ));
        }
        Scenario::PauseVault => {
            targets.vault.pause().await?;
            notes.push(format!("{}: Vault frozen (SIGSTOP)", targets.at()));
            tokio::time::sleep(timing.vault_pause).await;
            targets.vault.resume().await?;
            notes.push(format!("{}: Vault thawed (SIGCONT)", targets.at()));
        }
        Scenario::Llm429 => {
            // The three forms providers use, a third of the remaining time each.
            let forms = [
                RetryAfter::Seconds(1),
                RetryAfter::HttpDate(2),
                RetryAfter::Millis(500),
            ];
            let share = timing.duration.saturating_sub(timing.fault_at) / 3;
            for (index, retry_after) in forms.into_iter().enumerate() {
                if index > 0 {
                    tokio::time::sleep(share).await;
                }
                targets.stub.set_failure(Some(Failure::RateLimited {
                    every: 3,
                    retry_after,
                }))?;
                notes.push(format!(
                    "{}: 429 on 1 call in 3, retry after {retry_after}",
                    targets.at()
                ));
            }
        }
        Scenario::Llm500 => {
            set_failure(
                &targets,
                notes,
                Failure::Status {
                    status: 500,
                    every: 3,
                },
            )?;
        }
        Scenario::LlmHang => set_failure(&targets, notes, Failure::Hang { every: 5 })?,
        Scenario::LlmCutStream => set_failure(&targets, notes, Failure::CutStream { every: 3 })?,
        Scenario::LlmErrorEvent => {
            set_failure(&targets, notes, Failure::ErrorEvent { every: 3 })?;
        }
        Scenario::TermConsumer => {
            let grace = targets.fleet.shutdown_grace();
            let victim = targets.fleet.take_consumer(0)?;
            let (name, pid, log) = (victim.name.clone(), victim.pid(), victim.log().to_owned());
            let sent = Instant::now();
            victim.signal("TERM").await?;
            notes.push(format!("{}: SIGTERM {name} (pid {pid})", targets.at()));
            let status = victim.wait(grace + Duration::from_secs(5)).await?;
            let took = sent.elapsed().as_secs_f64();
            let (what, ok) = match status {
                Some(status) => (
                    format!(
                        "{name} exited with {} {took:.1} s after SIGTERM",
                        describe(status)
                    ),
                    status.code() == Some(0),
                ),
                None => (
                    format!("{name} was still running {took:.1} s after SIGTERM (killed)"),
                    false,
                ),
            };
            effects.checks.push((what, ok));
            if took >= grace.as_secs_f64() {
                notes.push(format!(
                    "{name} used its whole shutdown grace ({} ms)",
                    grace.as_millis()
                ));
            }
            for line in complaints_after_shutdown(&log, 3) {
                notes.push(format!("{name} logged: {line}"));
            }
            let started = targets.fleet.spawn_consumer()?;
            notes.push(format!("{}: started {started} in its place", targets.at()));
        }
        Scenario::PoisonMessage => {
            let probe = PoisonProbe::publish(targets.broker).await?;
            notes.push(format!(
                "{}: published {} malformed messages onto {JOBS_QUEUE}: {POISON_PER_KIND} of \
                 random bytes without properties, {POISON_PER_KIND} with a correlation id and a \
                 reply queue but a garbage body, {POISON_PER_KIND} of those also with a bogus \
                 wrapped key",
                targets.at(),
                probe.published
            ));
            effects.poison = Some(probe);
        }
    }
    Ok(effects)
}

fn set_failure(
    targets: &Targets<'_>,
    notes: &mut Vec<String>,
    failure: Failure,
) -> anyhow::Result<()> {
    targets.stub.set_failure(Some(failure))?;
    notes.push(format!("{}: stub failure {failure:?}", targets.at()));
    Ok(())
}

/// The kinds of malformed message `poison-message` publishes.
const POISON_KINDS: [&str; 3] = [
    "random bytes",
    "garbage body with a correlation id",
    "garbage body with a correlation id and a bogus wrapped key",
];

/// The malformed messages of `poison-message`, and what came of them.
pub struct PoisonProbe {
    connection: Connection,
    replies: lapin::Consumer,
    dead_before: u32,
    published: usize,
    /// Correlation id → kind, to tell which kind of message a reply answers.
    kinds: HashMap<String, &'static str>,
}

impl PoisonProbe {
    async fn publish(broker: &PrivateBroker) -> anyhow::Result<Self> {
        let dead_before = broker.ready_messages(DEAD_LETTER_QUEUE).await?;
        let connection = broker.connect().await?;
        let channel = connection.create_channel().await?;
        // A reply queue of our own, so a reply to a forged message would be seen.
        let (reply_to, replies) = letterbox_rabbitmq::private_reply_queue(&channel, "faults-probe")
            .await
            .context("could not declare the probe's reply queue")?;
        let mut published = 0;
        let mut kinds = HashMap::new();
        for (kind, label) in POISON_KINDS.into_iter().enumerate() {
            for _ in 0..POISON_PER_KIND {
                let body: Vec<u8> = (0..fastrand::usize(16..512))
                    .map(|_| fastrand::u8(..))
                    .collect();
                let correlation_id = uuid::Uuid::new_v4().to_string();
                kinds.insert(correlation_id.clone(), label);
                let plausible = BasicProperties::default()
                    .with_correlation_id(correlation_id.into())
                    .with_reply_to(reply_to.as_str().into())
                    .with_content_type(letterbox::codec::CONTENT_TYPE.into());
                let properties = match kind {
                    0 => BasicProperties::default(),
                    1 => plausible,
                    _ => {
                        let mut headers = FieldTable::default();
                        let bogus: String = (0..64).map(|_| fastrand::alphanumeric()).collect();
                        headers.insert(
                            letterbox::sealing::KEY_HEADER.into(),
                            AMQPValue::LongString(LongString::from(format!("vault:v1:{bogus}"))),
                        );
                        plausible.with_headers(headers)
                    }
                };
                publish_raw(&connection, JOBS_QUEUE, &body, properties).await?;
                published += 1;
            }
        }
        Ok(Self {
            connection,
            replies,
            dead_before,
            published,
            kinds,
        })
    }

    /// Notes what the workers did with the messages: replies sent to the forged reply queue,
    /// messages dead-lettered.
    pub async fn finish(mut self, broker: &PrivateBroker) -> Vec<String> {
        // What each reply answered, and what it said (decoded when it is not sealed).
        let mut replies: BTreeMap<String, usize> = BTreeMap::new();
        while let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(500), self.replies.next()).await
        {
            let Ok(delivery) = delivery else { break };
            let kind = delivery
                .properties
                .correlation_id()
                .as_ref()
                .and_then(|id| self.kinds.get(id.as_str()))
                .copied()
                .unwrap_or("an unknown message");
            let said = match letterbox::codec::decode_reply(&delivery.data) {
                Ok(reply) => match reply.outcome {
                    letterbox::Outcome::Failed(failure) => {
                        format!("failure {}", failure.code.as_str())
                    }
                    letterbox::Outcome::Letter(_) => "a letter".to_owned(),
                    letterbox::Outcome::Chunk(_) => "a piece of a letter".to_owned(),
                },
                Err(_) => "a sealed or unreadable reply".to_owned(),
            };
            *replies.entry(format!("{kind}: {said}")).or_insert(0) += 1;
        }
        let _ = self.connection.close(200, "done".into()).await;
        let dead = match broker.ready_messages(DEAD_LETTER_QUEUE).await {
            Ok(after) => format!("{}", after.saturating_sub(self.dead_before)),
            Err(error) => format!("unknown ({error:#})"),
        };
        let total: usize = replies.values().sum();
        let mut notes = vec![format!(
            "of the {} malformed messages, {dead} were dead-lettered to {DEAD_LETTER_QUEUE}; \
             replies sent to the probe's reply queue: {total}",
            self.published
        )];
        notes.extend(
            replies
                .into_iter()
                .map(|(reply, count)| format!("reply x{count} to {reply}")),
        );
        notes
    }
}
