//! What a worker does with one job, and how the delivery is settled afterwards.
//!
//! `process` always ends in a `Disposition`, and `settle` is the one place that acts on it: a job
//! is acked only after its reply (letter or error) is confirmed by the broker, so a crash before
//! that point hands the job to another worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use letterbox::backoff::Backoff;
use letterbox::{FailureCode, Job, JobFailure, Letter, Outcome, Piece, Reply};
use letterbox_rabbitmq::{JobDelivery, Replier, UnreadableJob};
use letterbox_vault::{KvPath, SecretStore, SecretValue};
use uuid::Uuid;

use crate::limiter::Limiter;
use crate::llm::{Completion, LlmClient, LlmError, Pieces};
use crate::metrics::{KeyRole, Metrics};
use crate::prompt::{Prompt, Templates};

/// One LLM provider a worker calls, with where its key is in Vault.
pub struct Route {
    pub(crate) llm: LlmClient,
    pub(crate) key_path: KvPath,
    /// Primary or fallback: which key it is, and the `provider` label of its calls.
    pub(crate) role: KeyRole,
}

impl Route {
    fn label(&self) -> &'static str {
        match self.role {
            KeyRole::Primary => "primary",
            KeyRole::Fallback => "fallback",
        }
    }
}

pub struct Worker {
    pub(crate) secrets: Arc<SecretStore>,
    /// Where every job goes first.
    pub(crate) primary: Route,
    /// Where a job goes when the primary failed it for a reason another provider may not share
    /// (see `LlmError::fallback_reason`), with attempts of its own within the job's deadline.
    pub(crate) fallback: Option<Route>,
    pub(crate) templates: Templates,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) llm_timeout: Duration,
    /// Set with `LETTERBOX_AUTH=tokens`: a job that is not sealed did not come from an ingress
    /// (which always seals then), so it is refused rather than answered.
    pub(crate) require_sealed: bool,
    /// Jobs this worker has answered (reply confirmed), each until its deadline: a redelivery
    /// or a replay of one is acked without a second LLM call. Past the deadline the job is
    /// expired, which also spares the call, so remembering it longer would only cost memory.
    pub(crate) answered: AnsweredJobs,
    /// Attempts at the LLM per job, the first included.
    pub(crate) max_attempts: u32,
    /// Deliveries of one job before it is parked (`LETTERBOX_MAX_DELIVERIES`).
    pub(crate) max_deliveries: u32,
    /// The longest a job may be worked on after its delivery, in ms (below the broker's consumer
    /// timeout, after which it would take the delivery back).
    pub(crate) work_budget_ms: u64,
    /// How many jobs run at once; told of every call's success or 429.
    pub(crate) limiter: Limiter,
}

/// Waits between LLM attempts: full jitter from a quarter second, doubling up to four seconds,
/// or longer when the provider says so (`Retry-After`).
const RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
/// An attempt is not started with less time than this left.
const MIN_ATTEMPT_MS: u64 = 250;
const MIN_ATTEMPT: Duration = Duration::from_millis(MIN_ATTEMPT_MS);

/// How long past its deadline an answered job id is still remembered.
const ANSWERED_MARGIN: Duration = Duration::from_secs(5);
/// Answered job ids remembered at most (a bound on memory, far above what deadlines leave:
/// 1,000 letters a second with 30 s deadlines keep about 35,000).
const ANSWERED_CAPACITY: usize = 100_000;
/// Forgotten ids are swept out once this many have been added since the last sweep.
const ANSWERED_SWEEP_EVERY: usize = 1_024;

/// The jobs this worker answered, each until its deadline (see [`remembered_for`]): a job id and
/// when it may be forgotten, 24 bytes an entry. (A general-purpose cache keeps several times
/// that per entry, and a busy worker holds tens of thousands of them.)
#[derive(Default)]
pub struct AnsweredJobs {
    inner: std::sync::Mutex<Answered>,
}

#[derive(Default)]
struct Answered {
    /// Job id to the time it may be forgotten, ms since the epoch.
    until_ms: std::collections::HashMap<Uuid, u64>,
    added_since_sweep: usize,
}

impl AnsweredJobs {
    /// Remembers `job_id`, answered at `now_ms`, whose deadline is `deadline_ms`.
    pub fn insert(&self, job_id: Uuid, deadline_ms: u64, now_ms: u64) {
        let until = now_ms.saturating_add(
            u64::try_from(remembered_for(deadline_ms, now_ms).as_millis()).unwrap_or(u64::MAX),
        );
        let mut answered = self.lock();
        answered.added_since_sweep += 1;
        if answered.added_since_sweep >= ANSWERED_SWEEP_EVERY
            || answered.until_ms.len() >= ANSWERED_CAPACITY
        {
            answered.until_ms.retain(|_, until| *until > now_ms);
            answered.added_since_sweep = 0;
            // Still full of ids within their deadlines: forget the one nearest its end.
            if answered.until_ms.len() >= ANSWERED_CAPACITY
                && let Some(oldest) = answered
                    .until_ms
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(id, _)| *id)
            {
                answered.until_ms.remove(&oldest);
            }
        }
        answered.until_ms.insert(job_id, until);
    }

    /// Whether `job_id` was answered and is still remembered at `now_ms`.
    pub fn contains(&self, job_id: &Uuid, now_ms: u64) -> bool {
        self.lock()
            .until_ms
            .get(job_id)
            .is_some_and(|until| *until > now_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answered> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The longest an answered job id is remembered, whatever its deadline.
const ANSWERED_AT_MOST: Duration = Duration::from_secs(600);

/// How long an id answered at `now_ms` is remembered: until its deadline, plus a margin, and
/// never more than [`ANSWERED_AT_MOST`].
fn remembered_for(deadline_ms: u64, now_ms: u64) -> Duration {
    (Duration::from_millis(deadline_ms.saturating_sub(now_ms)) + ANSWERED_MARGIN)
        .min(ANSWERED_AT_MOST)
}

/// What becomes of a delivery once the worker is done with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Answered (with a letter or an error reply): remove it from the queue.
    Ack,
    /// Not answered for a passing reason: give it to any worker again.
    Requeue,
    /// Can never be answered: park it in the dead-letter queue, with why.
    DeadLetter(&'static str),
}

impl Worker {
    pub async fn process(&self, delivery: &JobDelivery, replier: &Replier) -> Disposition {
        let started = Instant::now();
        let started_ms = letterbox::time::now_ms();
        let _in_flight = self.metrics.in_flight.track();
        let (Some(reply_to), Some(correlation_id)) = (&delivery.reply_to, &delivery.correlation_id)
        else {
            tracing::warn!("Dead-lettering a job without reply-to or correlation id");
            return Disposition::DeadLetter("no_reply_to");
        };
        let wrapped_key = delivery.wrapped_key.as_deref();
        let job = match &delivery.job {
            Ok(job) => job,
            Err(error) if error.is_transient() => {
                // The key service is down, not the job: hand it back after a pause, rather than
                // spinning through its delivery limit.
                tracing::warn!(%error, "Cannot decrypt a job now; handing it back");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Disposition::Requeue;
            }
            Err(error) => {
                tracing::warn!(%error, "Dead-lettering a job that could not be read");
                // A reply is sealed under the job's key, so only a job whose body that key
                // authenticated gets one: a forged message naming a real job's key and id must
                // not end that job's request with an error.
                let authenticated = matches!(error, UnreadableJob::Undecodable(_));
                if authenticated && let Ok(job_id) = Uuid::parse_str(correlation_id) {
                    let reply = failed(
                        job_id,
                        FailureCode::InvalidJob,
                        "the job could not be read by the worker",
                    );
                    let _ = replier
                        .send(reply_to, correlation_id, wrapped_key, &reply)
                        .await;
                }
                self.metrics.jobs.inc(FailureCode::InvalidJob.as_str());
                return Disposition::DeadLetter(match error {
                    UnreadableJob::NotSealed => "not_sealed",
                    UnreadableJob::Unsealable(_) => "undecryptable",
                    UnreadableJob::Undecodable(_) => "undecodable",
                });
            }
        };

        let refusal = if self.require_sealed && wrapped_key.is_none() {
            Some((
                "not_sealed",
                "the job is not sealed; this worker only takes sealed jobs".to_owned(),
            ))
        } else {
            job.check_bounds()
                .err()
                .map(|reason| ("out_of_bounds", reason))
        };
        if let Some((code, reason)) = refusal {
            tracing::warn!(job_id = %job.id, %reason, "Dead-lettering a job no ingress could have sent");
            self.metrics.jobs.inc(FailureCode::InvalidJob.as_str());
            return Disposition::DeadLetter(code);
        }
        if self.answered.contains(&job.id, letterbox::time::now_ms()) {
            tracing::info!(job_id = %job.id, "Job already answered here; dropping the duplicate");
            self.metrics.jobs.inc("duplicate");
            return Disposition::Ack;
        }
        // Workers died on this job before (it was delivered and never finished): rather than let
        // it take down another one, tell the client and park it for an operator.
        // A job past its deadline is answered `expired` without any work below, so it cannot be
        // what takes workers down (nor is it parked: it may be one answered before, whose id is
        // no longer remembered).
        let deliveries = delivery.previous_deliveries + 1;
        if delivery.previous_deliveries > 0
            && deliveries >= u64::from(self.max_deliveries)
            && !job.is_expired_at(letterbox::time::now_ms())
        {
            tracing::warn!(job_id = %job.id, deliveries, "Parking a job delivered as often as allowed");
            let reply = failed(
                job.id,
                FailureCode::DeliveryLimit,
                "the job was delivered to workers as often as allowed without being finished; it is kept for an operator",
            );
            let _ = replier
                .send(reply_to, correlation_id, wrapped_key, &reply)
                .await;
            self.metrics.jobs.inc(FailureCode::DeliveryLimit.as_str());
            return Disposition::DeadLetter("delivery_limit");
        }

        let (outcome, llm_time) = if job.stream {
            // The pieces go to the reply queue while the provider writes; every one is published
            // before the final reply, which follows them on the same channel.
            let left_ms = self
                .budget_end_ms(job, started_ms)
                .saturating_sub(letterbox::time::now_ms());
            let (pieces, mut rx) =
                Pieces::new(tokio::time::Instant::now() + Duration::from_millis(left_ms));
            // This run's pieces, told apart from another worker's should this one stop.
            let run = fastrand::u32(..);
            let work = async move {
                let result = self.run(job, started_ms, Some(&pieces)).await;
                drop(pieces);
                result
            };
            let forward = async {
                while let Some(mut text) = rx.recv().await {
                    // Whatever arrived while the last piece was being published goes as one.
                    while let Ok(more) = rx.try_recv() {
                        text.push_str(&more);
                    }
                    let piece = Reply {
                        job_id: job.id,
                        outcome: Outcome::Chunk(Piece { run, text }),
                    };
                    if let Err(error) = replier
                        .send(reply_to, correlation_id, wrapped_key, &piece)
                        .await
                    {
                        tracing::warn!(job_id = %job.id, %error, "Could not publish a piece of the letter");
                    }
                }
            };
            tokio::join!(work, forward).0
        } else {
            self.run(job, started_ms, None).await
        };
        let label = match &outcome {
            Outcome::Letter(_) => "letter",
            Outcome::Failed(failure) => failure.code.as_str(),
            // `run` ends with a letter or a failure; pieces of a letter go out while it runs.
            Outcome::Chunk(_) => "letter",
        };
        let reply = Reply {
            job_id: job.id,
            outcome,
        };
        match replier
            .send(reply_to, correlation_id, wrapped_key, &reply)
            .await
        {
            Ok(()) => {
                self.answered
                    .insert(job.id, job.deadline_ms, letterbox::time::now_ms());
                let processing = started.elapsed();
                self.metrics.jobs.inc(label);
                self.metrics.processing.record(processing);
                // From the ingress publishing the job to its reply being confirmed: all of the
                // job's life that this side of the broker can see.
                let end_to_end = Duration::from_micros(
                    letterbox::time::now_us().saturating_sub(job.created_at_us),
                );
                self.metrics.end_to_end.record(end_to_end);
                self.metrics
                    .overhead
                    .record(end_to_end.saturating_sub(llm_time.unwrap_or_default()));
                tracing::info!(job_id = %job.id, outcome = label, processing_ms = u64::try_from(processing.as_millis()).unwrap_or(u64::MAX), "Job done");
                Disposition::Ack
            }
            Err(error) => {
                tracing::warn!(job_id = %job.id, %error, "Could not publish the reply; handing the job back");
                Disposition::Requeue
            }
        }
    }

    /// The letter for `job`, or why there is none; with the provider's time when it was called.
    /// When work on `job` must end (ms since the Unix epoch): its deadline, and never so late
    /// that the broker takes the delivery back (its consumer timeout) while this worker works.
    fn budget_end_ms(&self, job: &Job, started_ms: u64) -> u64 {
        job.deadline_ms
            .min(started_ms.saturating_add(self.work_budget_ms))
    }

    /// With `pieces`, the provider streams and its text goes out as it comes.
    async fn run(
        &self,
        job: &Job,
        started_ms: u64,
        pieces: Option<&Pieces>,
    ) -> (Outcome, Option<Duration>) {
        let now_us = letterbox::time::now_us();
        let queued = Duration::from_micros(now_us.saturating_sub(job.created_at_us));
        let queued_ms = u64::try_from(queued.as_millis()).unwrap_or(u64::MAX);
        self.metrics.queue_wait.record(queued);
        if job.is_expired_at(now_us / 1000) {
            self.metrics.expired.inc();
            return (
                failure(
                    FailureCode::Expired,
                    "the job waited in the queue past its deadline",
                ),
                None,
            );
        }

        let key = match self.secrets.read(&self.primary.key_path).await {
            Ok(key) => key,
            Err(error) => {
                tracing::error!(%error, "Could not read the LLM key");
                return (
                    failure(
                        FailureCode::SecretUnavailable,
                        "the LLM key is unavailable; retry shortly",
                    ),
                    None,
                );
            }
        };
        let template = match self.templates.current().await {
            Ok(template) => template,
            Err(error) => {
                tracing::error!(%error, "No prompt template");
                return (
                    failure(FailureCode::LlmFailed, "the prompt template is unavailable"),
                    None,
                );
            }
        };
        let prompt = template.render(job);
        // Room for the requested words in any language, plus the greeting and closing.
        let max_tokens = u32::from(job.options.words()) * 4 + 256;
        // Never past the job's deadline, and never holding the delivery long enough for the
        // broker to take it back (its consumer timeout) while this worker still works on it.
        let budget_end_ms = self.budget_end_ms(job, started_ms);

        self.metrics.note_key(KeyRole::Primary, &key);
        let call = Call {
            job,
            prompt: &prompt,
            max_tokens,
            budget_end_ms,
            pieces,
        };
        let mut result = self.attempts(&self.primary, key, &call).await;
        // Once the client has seen pieces of a letter, another provider's would not follow on.
        let reason = result
            .as_ref()
            .err()
            .and_then(LlmError::fallback_reason)
            .filter(|_| !pieces.is_some_and(Pieces::any_sent));
        let time_left = budget_end_ms.saturating_sub(letterbox::time::now_ms()) >= MIN_ATTEMPT_MS;
        if let (Some(reason), Some(fallback), true) = (reason, &self.fallback, time_left) {
            self.metrics.llm_fallbacks.inc(reason);
            tracing::warn!(job_id = %job.id, reason, "The primary LLM provider failed the job; trying the fallback");
            match self.secrets.read(&fallback.key_path).await {
                Ok(key) => {
                    self.metrics.note_key(KeyRole::Fallback, &key);
                    result = self.attempts(fallback, key, &call).await;
                    if result.is_ok() {
                        tracing::info!(job_id = %job.id, "The fallback LLM provider wrote the letter");
                    }
                }
                // The client hears what the primary said.
                Err(error) => {
                    tracing::error!(job_id = %job.id, %error, "Could not read the fallback LLM key");
                }
            }
        }
        match result {
            Ok(completion) => {
                self.metrics.llm.record(completion.elapsed);
                let letter = Letter {
                    text: completion.text,
                    model: completion.model,
                    queued_ms,
                    llm_ms: u64::try_from(completion.elapsed.as_millis()).unwrap_or(u64::MAX),
                    llm_us: u64::try_from(completion.elapsed.as_micros()).unwrap_or(u64::MAX),
                };
                (Outcome::Letter(letter), Some(completion.elapsed))
            }
            Err(error) => {
                tracing::warn!(job_id = %job.id, %error, "LLM call failed");
                let (code, retry_after) = match &error {
                    LlmError::Timeout(_) => (FailureCode::LlmTimeout, None),
                    LlmError::RateLimited { retry_after } => {
                        (FailureCode::LlmRateLimited, *retry_after)
                    }
                    _ => (FailureCode::LlmFailed, None),
                };
                let outcome = Outcome::Failed(JobFailure {
                    code,
                    message: error.to_string(),
                    retry_after_ms: retry_after
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                });
                (outcome, None)
            }
        }
    }
}

impl Worker {
    /// Calls `route` until it answers, fails for good, or its attempts or the time run out;
    /// the last failure when there is no letter.
    async fn attempts(
        &self,
        route: &Route,
        mut key: Arc<SecretValue>,
        call: &Call<'_>,
    ) -> Result<Completion, LlmError> {
        let Call {
            job,
            prompt,
            max_tokens,
            budget_end_ms,
            pieces,
        } = *call;
        // The fallback may follow the primary's last attempt: that one leaves it time too.
        let fallback_follows = route.role == KeyRole::Primary && self.fallback.is_some();
        let mut key_refreshed = false;
        let mut attempt: u32 = 0;
        loop {
            let remaining =
                Duration::from_millis(budget_end_ms.saturating_sub(letterbox::time::now_ms()));
            if remaining < MIN_ATTEMPT {
                return Err(LlmError::Timeout(0));
            }
            // While another attempt may follow, one gets at most half the time left, so a
            // provider that hangs on one call cannot take the whole deadline from the retry.
            let share = if attempt + 1 < self.max_attempts || fallback_follows {
                (remaining / 2).max(MIN_ATTEMPT)
            } else {
                remaining
            };
            let round = self.limiter.round();
            let result = route
                .llm
                .complete(
                    &key.value,
                    prompt,
                    max_tokens,
                    share.min(self.llm_timeout),
                    pieces,
                )
                .await;
            let error = match result {
                Ok(completion) => {
                    self.metrics.llm_calls.inc(route.label(), "letter");
                    self.limiter.succeeded();
                    return Ok(completion);
                }
                Err(error) => error,
            };
            self.metrics.llm_calls.inc(route.label(), error.label());
            if matches!(error, LlmError::RateLimited { .. }) {
                self.limiter.rate_limited(round);
            }
            if matches!(error, LlmError::Unauthorized(_)) && !key_refreshed {
                // The key may have been rotated: read it again, and if Vault holds a newer
                // version, try once more with it. A rotation under load fails no job.
                key_refreshed = true;
                self.secrets.invalidate(&route.key_path).await;
                match self.secrets.read(&route.key_path).await {
                    Ok(fresh) if fresh.version != key.version => {
                        tracing::info!(
                            provider = route.label(),
                            version = fresh.version,
                            "Retrying with a newer LLM key from Vault"
                        );
                        self.metrics.note_key(route.role, &fresh);
                        key = fresh;
                        continue;
                    }
                    _ => return Err(error),
                }
            }
            let Some(reason) = error.retry_reason() else {
                return Err(error);
            };
            if pieces.is_some_and(Pieces::any_sent) {
                // The client has seen the start of this letter: a second attempt would write
                // another after it. The stream ends with this error instead.
                return Err(error);
            }
            attempt += 1;
            if attempt >= self.max_attempts {
                return Err(error);
            }
            let wait = RETRY
                .delay(attempt - 1)
                .max(error.retry_after().unwrap_or_default());
            let next_start = letterbox::time::now_ms()
                .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            if next_start.saturating_add(MIN_ATTEMPT_MS) > budget_end_ms {
                // No time left for another attempt: say what the provider said.
                return Err(error);
            }
            self.metrics.llm_retries.inc(reason);
            tracing::info!(job_id = %job.id, provider = route.label(), attempt, reason, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "Retrying the LLM call");
            tokio::time::sleep(wait).await;
        }
    }
}

/// One job's LLM call, whichever provider makes it.
#[derive(Clone, Copy)]
struct Call<'a> {
    job: &'a Job,
    prompt: &'a Prompt,
    max_tokens: u32,
    /// No attempt starts or runs past this instant (ms since the Unix epoch).
    budget_end_ms: u64,
    /// Where a streaming job's pieces go.
    pieces: Option<&'a Pieces>,
}

fn failure(code: FailureCode, message: &str) -> Outcome {
    Outcome::Failed(JobFailure {
        code,
        message: message.to_owned(),
        retry_after_ms: None,
    })
}

fn failed(job_id: Uuid, code: FailureCode, message: &str) -> Reply {
    Reply {
        job_id,
        outcome: failure(code, message),
    }
}

/// Acts on a disposition; the one place a delivery is acked, requeued or dead-lettered. A job
/// on its last allowed delivery is parked rather than requeued, so the reason is kept.
pub async fn settle(
    delivery: &JobDelivery,
    disposition: Disposition,
    replier: &Replier,
    max_deliveries: u32,
) {
    let disposition = match disposition {
        Disposition::Requeue if delivery.previous_deliveries + 1 >= u64::from(max_deliveries) => {
            tracing::warn!(
                deliveries = delivery.previous_deliveries + 1,
                "Dead-lettering a job delivered as often as allowed"
            );
            Disposition::DeadLetter("delivery_limit")
        }
        other => other,
    };
    let result = match disposition {
        Disposition::Ack => delivery.ack().await,
        Disposition::Requeue => delivery.requeue().await,
        Disposition::DeadLetter(reason) => replier.park(delivery, reason).await,
    };
    if let Err(error) = result {
        // The channel is gone: the broker requeues the delivery by itself.
        tracing::warn!(%error, ?disposition, "Could not settle a delivery");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_jobs_are_forgotten_after_their_deadline_and_margin() {
        let answered = AnsweredJobs::default();
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        answered.insert(first, 1_030_000, 1_000_000);
        answered.insert(second, 1_100_000, 1_000_000);
        assert!(answered.contains(&first, 1_034_999));
        assert!(!answered.contains(&first, 1_035_000));
        assert!(answered.contains(&second, 1_035_000));
        assert!(!answered.contains(&Uuid::new_v4(), 1_000_000));
        // Sweeps drop what is past its time and keep the rest.
        for _ in 0..ANSWERED_SWEEP_EVERY {
            answered.insert(Uuid::new_v4(), 1_000_000, 1_040_000);
        }
        assert_eq!(answered.lock().until_ms.get(&first), None);
        assert!(answered.contains(&second, 1_040_000));
    }

    #[test]
    fn an_answered_job_is_remembered_until_its_deadline_and_a_margin() {
        assert_eq!(
            remembered_for(1_000_030_000, 1_000_000_000),
            Duration::from_secs(35)
        );
        // Answered after its deadline (a slow reply confirm): only the margin.
        assert_eq!(remembered_for(1_000, 5_000), Duration::from_secs(5));
        // A deadline a year away is remembered ten minutes.
        assert_eq!(
            remembered_for(1_000 + 365 * 86_400_000, 1_000),
            Duration::from_secs(600)
        );
    }
}
