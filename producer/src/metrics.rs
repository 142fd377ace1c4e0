//! The ingress's metrics, rendered on `/metrics`.

use std::collections::BTreeMap;

use letterbox::telemetry::{CounterVec, Gauge, LatencyHistogram, LatencySummary};
use serde::Serialize;
use utoipa::ToSchema;

pub struct Metrics {
    pub responses: CounterVec,
    /// How streamed answers ended: behind their 200, `done`, an error code, or `abandoned`.
    pub streams: CounterVec,
    pub in_flight: Gauge,
    pub end_to_end: LatencyHistogram,
    pub queue_wait: LatencyHistogram,
    pub llm: LatencyHistogram,
    pub overhead: LatencyHistogram,
    pub extraction: LatencyHistogram,
    pub first_token: LatencyHistogram,
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            responses: CounterVec::new(
                "letterbox_http_responses_total",
                "HTTP responses of the API, by status code.",
                "code",
            ),
            streams: CounterVec::new(
                "letterbox_streams_total",
                "Streamed answers, by how they ended: done, the error code of their error event, or abandoned by the client.",
                "outcome",
            ),
            in_flight: Gauge::new(
                "letterbox_http_requests_in_flight",
                "Cover-letter requests being handled now.",
            ),
            first_token: LatencyHistogram::new(
                "letterbox_time_to_first_token_seconds",
                "Time from receiving a streaming request to sending its first piece of the letter.",
            ),
            end_to_end: LatencyHistogram::new(
                "letterbox_end_to_end_seconds",
                "Time from receiving a request to answering it with a letter.",
            ),
            queue_wait: LatencyHistogram::new(
                "letterbox_queue_wait_seconds",
                "Time a job waited between publication and a worker starting it.",
            ),
            llm: LatencyHistogram::new(
                "letterbox_llm_seconds",
                "Time the LLM provider took to write a letter.",
            ),
            overhead: LatencyHistogram::new(
                "letterbox_overhead_seconds",
                "End-to-end time minus the LLM provider's time: what Letterbox itself adds.",
            ),
            extraction: LatencyHistogram::new(
                "letterbox_extraction_seconds",
                "Time to read, extract and check the documents of a request.",
            ),
        }
    }

    /// The same figures as `/metrics`, as JSON for `/v1/stats`.
    pub fn stats(&self, ready: bool, waiting: usize) -> Stats {
        Stats {
            ready,
            replies_waiting: waiting,
            requests_in_flight: self.in_flight.get(),
            responses: self.responses.snapshot(),
            latency_ms: Latencies {
                end_to_end: self.end_to_end.summary(),
                overhead: self.overhead.summary(),
                llm: self.llm.summary(),
                queue_wait: self.queue_wait.summary(),
                extraction: self.extraction.summary(),
                time_to_first_token: self.first_token.summary(),
            },
        }
    }

    pub fn render(&self, ready: bool, waiting: usize) -> String {
        let mut out = String::with_capacity(4096);
        self.responses.render(&mut out);
        self.streams.render(&mut out);
        self.in_flight.render(&mut out);
        for histogram in [
            &self.end_to_end,
            &self.queue_wait,
            &self.llm,
            &self.overhead,
            &self.extraction,
            &self.first_token,
        ] {
            histogram.render(&mut out);
        }
        let waiting_gauge = Gauge::new(
            "letterbox_replies_waiting",
            "Published jobs whose reply this ingress is waiting for.",
        );
        waiting_gauge.set(i64::try_from(waiting).unwrap_or(i64::MAX));
        waiting_gauge.render(&mut out);
        let ready_gauge = Gauge::new(
            "letterbox_broker_ready",
            "1 while the broker connection is up.",
        );
        ready_gauge.set(i64::from(ready));
        ready_gauge.render(&mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `GET /v1/stats`: the figures of `/metrics` as JSON, since the process started.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    /// Whether the broker connection and the reply queue are up.
    pub ready: bool,
    /// Requests waiting for a letter.
    pub replies_waiting: usize,
    /// Requests being handled.
    pub requests_in_flight: i64,
    /// Responses given, by status code (`"200"`, `"422"`, …, `"other"`).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub responses: BTreeMap<&'static str, u64>,
    pub latency_ms: Latencies,
}

/// Latency summaries in milliseconds.
#[derive(Serialize, ToSchema)]
pub struct Latencies {
    /// Request received to letter answered.
    pub end_to_end: LatencySummary,
    /// End-to-end time minus the provider's time: what Letterbox adds.
    pub overhead: LatencySummary,
    /// The provider's time.
    pub llm: LatencySummary,
    /// Job published to a worker starting it.
    pub queue_wait: LatencySummary,
    /// Reading and checking a request's documents.
    pub extraction: LatencySummary,
    /// A streaming request's arrival to its first piece of the letter.
    pub time_to_first_token: LatencySummary,
}
