//! The worker's metrics, rendered on `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use letterbox::telemetry::{Counter, CounterVec, Gauge, LatencyHistogram};
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
            key_created_at_s: AtomicU64::new(0),
        }
    }

    /// Remembers the version of the LLM key in use, for `letterbox_secret_age_seconds`.
    pub fn note_key(&self, key: &SecretValue) {
        if let Some(created) = key.created_at_s {
            self.key_created_at_s.store(created, Ordering::Relaxed);
        }
    }

    pub fn render(&self, capacity: u16) -> String {
        let mut out = String::with_capacity(4096);
        self.jobs.render(&mut out);
        self.in_flight.render(&mut out);
        self.expired.render(&mut out);
        self.llm_retries.render(&mut out);
        let capacity_gauge = Gauge::new(
            "letterbox_worker_capacity",
            "Jobs this worker runs at once at most.",
        );
        capacity_gauge.set(i64::from(capacity));
        capacity_gauge.render(&mut out);
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
