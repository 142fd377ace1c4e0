//! The worker's metrics, rendered on `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use letterbox::telemetry::{Counter, CounterVec, CounterVec2, FloatGauge, Gauge, LatencyHistogram};
use letterbox_vault::SecretValue;

pub struct Metrics {
    pub jobs: CounterVec,
    pub in_flight: Gauge,
    pub expired: Counter,
    pub llm_retries: CounterVec,
    /// Every LLM call, by provider (`primary`, `fallback`) and outcome (`letter`, or what went
    /// wrong: `LlmError::label`).
    pub llm_calls: CounterVec2,
    /// Jobs handed to the fallback provider, by why the first one failed them.
    pub llm_fallbacks: CounterVec,
    pub queue_wait: LatencyHistogram,
    pub llm: LatencyHistogram,
    pub processing: LatencyHistogram,
    pub end_to_end: LatencyHistogram,
    pub overhead: LatencyHistogram,
    /// Jobs ready in the queue, as the broker said at the last look (every few seconds).
    pub queue_depth: Gauge,
    /// Creation time (s since the epoch) of the LLM key version last used; 0 before the first.
    key_created_at_s: AtomicU64,
    /// The same for the fallback provider's key.
    fallback_key_created_at_s: AtomicU64,
}

/// Which of the worker's LLM keys a version belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    Primary,
    Fallback,
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            jobs: CounterVec::new(
                "letterbox_jobs_total",
                "Jobs this worker finished, by outcome.",
                "outcome",
            ),
            in_flight: Gauge::new(
                "letterbox_jobs_in_flight",
                "Jobs this worker is running now.",
            ),
            expired: Counter::new(
                "letterbox_jobs_expired_total",
                "Jobs dropped without an LLM call because their deadline had passed.",
            ),
            llm_retries: CounterVec::new(
                "letterbox_llm_retries_total",
                "LLM calls tried again, by what went wrong with the one before.",
                "reason",
            ),
            llm_calls: CounterVec2::new(
                "letterbox_llm_calls_total",
                "LLM calls, by provider (primary or fallback) and outcome (letter, or what went wrong).",
                ("provider", "outcome"),
            ),
            llm_fallbacks: CounterVec::new(
                "letterbox_llm_fallbacks_total",
                "Jobs handed to the fallback LLM provider, by why the primary failed them.",
                "reason",
            ),
            queue_wait: LatencyHistogram::new(
                "letterbox_queue_wait_seconds",
                "Time from the ingress accepting a job to this worker starting it.",
            ),
            llm: LatencyHistogram::new(
                "letterbox_llm_seconds",
                "Time the LLM provider took to answer.",
            ),
            processing: LatencyHistogram::new(
                "letterbox_processing_seconds",
                "Time from this worker starting a job to its reply being confirmed.",
            ),
            end_to_end: LatencyHistogram::new(
                "letterbox_end_to_end_seconds",
                "Time from the ingress publishing a job to this worker's reply being confirmed.",
            ),
            overhead: LatencyHistogram::new(
                "letterbox_overhead_seconds",
                "End-to-end time minus the LLM provider's time: what Letterbox adds.",
            ),
            queue_depth: Gauge::new(
                "letterbox_queue_depth",
                "Jobs waiting in the jobs queue for any worker (ready, not yet delivered), read every few seconds.",
            ),
            key_created_at_s: AtomicU64::new(0),
            fallback_key_created_at_s: AtomicU64::new(0),
        }
    }

    /// Remembers the version of an LLM key in use, for `letterbox_secret_age_seconds`.
    pub fn note_key(&self, role: KeyRole, key: &SecretValue) {
        let slot = match role {
            KeyRole::Primary => &self.key_created_at_s,
            KeyRole::Fallback => &self.fallback_key_created_at_s,
        };
        if let Some(created) = key.created_at_s {
            slot.store(created, Ordering::Relaxed);
        }
    }

    /// The metrics text; `capacity` is the most jobs this worker runs at once, `limit` how many
    /// it runs at once now (lower while the provider answers 429).
    pub fn render(&self, capacity: usize, limit: usize) -> String {
        let mut out = String::with_capacity(4096);
        self.jobs.render(&mut out);
        self.in_flight.render(&mut out);
        self.expired.render(&mut out);
        self.llm_retries.render(&mut out);
        self.llm_calls.render(&mut out);
        self.llm_fallbacks.render(&mut out);
        let capacity_gauge = Gauge::new(
            "letterbox_worker_capacity",
            "Jobs this worker runs at once at most.",
        );
        capacity_gauge.set(i64::try_from(capacity).unwrap_or(i64::MAX));
        capacity_gauge.render(&mut out);
        let limit_gauge = Gauge::new(
            "letterbox_consumer_concurrency_limit",
            "Jobs this worker runs at once now: its capacity, lowered while the LLM provider answers 429.",
        );
        limit_gauge.set(i64::try_from(limit).unwrap_or(i64::MAX));
        limit_gauge.render(&mut out);
        let utilization = FloatGauge::new(
            "letterbox_consumer_utilization",
            "Jobs running divided by the current concurrency limit, 0 to 1: the autoscaling signal.",
        );
        utilization.set(utilization_of(self.in_flight.get(), limit));
        utilization.render(&mut out);
        self.queue_depth.render(&mut out);
        let now_s = letterbox::time::now_ms() / 1000;
        let ages: Vec<(&str, u64)> = [
            ("llm_key", &self.key_created_at_s),
            ("llm_fallback_key", &self.fallback_key_created_at_s),
        ]
        .into_iter()
        .map(|(secret, created)| (secret, created.load(Ordering::Relaxed)))
        .filter(|(_, created)| *created > 0)
        .map(|(secret, created)| (secret, now_s.saturating_sub(created)))
        .collect();
        if !ages.is_empty() {
            let _ = writeln!(
                out,
                "# HELP letterbox_secret_age_seconds Age of the secret version in use, from Vault's metadata.\n\
                 # TYPE letterbox_secret_age_seconds gauge"
            );
            for (secret, age) in ages {
                let _ = writeln!(
                    out,
                    "letterbox_secret_age_seconds{{secret=\"{secret}\"}} {age}"
                );
            }
        }
        for histogram in [
            &self.queue_wait,
            &self.llm,
            &self.processing,
            &self.end_to_end,
            &self.overhead,
        ] {
            histogram.render(&mut out);
        }
        out
    }
}

/// Jobs running over the limit, capped at 1: jobs started before the limit was lowered may run
/// above it for a while.
fn utilization_of(in_flight: i64, limit: usize) -> f64 {
    let limit = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
    let in_flight = u32::try_from(in_flight.max(0)).unwrap_or(u32::MAX);
    (f64::from(in_flight) / f64::from(limit)).min(1.0)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, name: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn utilization_is_jobs_running_over_the_current_limit() {
        let metrics = Metrics::new();
        let _running: Vec<_> = (0..6).map(|_| metrics.in_flight.track()).collect();
        metrics.queue_depth.set(42);
        let text = metrics.render(16, 8);
        assert_eq!(
            sample(&text, "letterbox_consumer_utilization").as_deref(),
            Some("0.75")
        );
        assert_eq!(
            sample(&text, "letterbox_consumer_concurrency_limit").as_deref(),
            Some("8")
        );
        assert_eq!(
            sample(&text, "letterbox_worker_capacity").as_deref(),
            Some("16")
        );
        assert_eq!(
            sample(&text, "letterbox_queue_depth").as_deref(),
            Some("42")
        );
        assert!(
            text.contains("# TYPE letterbox_consumer_utilization gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn provider_calls_fallbacks_and_both_key_ages_are_rendered() {
        let metrics = Metrics::new();
        metrics.llm_calls.inc("primary", "server_error");
        metrics.llm_calls.inc("fallback", "letter");
        metrics.llm_fallbacks.inc("server_error");
        let now_s = letterbox::time::now_ms() / 1000;
        let key = |age_s: u64| SecretValue {
            value: secrecy::SecretString::from("sk-not-rendered"),
            version: 1,
            created_at_s: Some(now_s - age_s),
        };
        metrics.note_key(KeyRole::Primary, &key(7_200));
        metrics.note_key(KeyRole::Fallback, &key(3_600));
        let text = metrics.render(16, 16);
        let value = |series: &str| sample(&text, series).and_then(|v| v.parse::<u64>().ok());
        assert_eq!(
            value("letterbox_llm_calls_total{provider=\"primary\",outcome=\"server_error\"}"),
            Some(1)
        );
        assert_eq!(
            value("letterbox_llm_calls_total{provider=\"fallback\",outcome=\"letter\"}"),
            Some(1)
        );
        assert_eq!(
            value("letterbox_llm_fallbacks_total{reason=\"server_error\"}"),
            Some(1)
        );
        // Within a second or two of the ages given, as the clock moves.
        let primary_age = value("letterbox_secret_age_seconds{secret=\"llm_key\"}").unwrap();
        let fallback_age =
            value("letterbox_secret_age_seconds{secret=\"llm_fallback_key\"}").unwrap();
        assert_eq!(primary_age - fallback_age, 3_600);
        assert_eq!(
            text.matches("# TYPE letterbox_secret_age_seconds gauge")
                .count(),
            1
        );
        assert!(!text.contains("sk-not-rendered"));
    }

    #[test]
    fn utilization_stays_within_zero_and_one() {
        assert_eq!(utilization_of(0, 16), 0.0);
        assert_eq!(utilization_of(16, 16), 1.0);
        // Jobs started before the limit was halved.
        assert_eq!(utilization_of(10, 4), 1.0);
        assert_eq!(utilization_of(1, 3), 1.0 / 3.0);
    }
}
