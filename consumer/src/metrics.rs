//! The worker's metrics, rendered on `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use letterbox::telemetry::{Counter, CounterVec, FloatGauge, Gauge, LatencyHistogram};
use letterbox_vault::SecretValue;

pub struct Metrics {
    pub jobs: CounterVec,
    pub in_flight: Gauge,
    pub expired: Counter,
    pub llm_retries: CounterVec,
    pub queue_wait: LatencyHistogram,
    pub llm: LatencyHistogram,
    pub processing: LatencyHistogram,
    pub end_to_end: LatencyHistogram,
    pub overhead: LatencyHistogram,
    /// Jobs ready in the queue, as the broker said at the last look (every few seconds).
    pub queue_depth: Gauge,
    /// Creation time (s since the epoch) of the LLM key version last used; 0 before the first.
    key_created_at_s: AtomicU64,
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
        }
    }

    /// Remembers the version of the LLM key in use, for `letterbox_secret_age_seconds`.
    pub fn note_key(&self, key: &SecretValue) {
        if let Some(created) = key.created_at_s {
            self.key_created_at_s.store(created, Ordering::Relaxed);
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
        let created = self.key_created_at_s.load(Ordering::Relaxed);
        if created > 0 {
            let age = (letterbox::time::now_ms() / 1000).saturating_sub(created);
            let _ = writeln!(
                out,
                "# HELP letterbox_secret_age_seconds Age of the secret version in use, from Vault's metadata.\n\
                 # TYPE letterbox_secret_age_seconds gauge\n\
                 letterbox_secret_age_seconds{{secret=\"llm_key\"}} {age}"
            );
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
    fn utilization_stays_within_zero_and_one() {
        assert_eq!(utilization_of(0, 16), 0.0);
        assert_eq!(utilization_of(16, 16), 1.0);
        // Jobs started before the limit was halved.
        assert_eq!(utilization_of(10, 4), 1.0);
        assert_eq!(utilization_of(1, 3), 1.0 / 3.0);
    }
}
