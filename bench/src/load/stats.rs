//! What one step measured, reduced to the figures the report prints: latency percentiles from
//! HDR histograms, the answers tallied by kind, the peak memory of each process.
//!
//! Latencies are kept in microseconds (3 significant digits, up to an hour) and reported in
//! milliseconds. Only requests answered with a letter enter the latency and overhead
//! histograms: an error answered in microseconds says nothing about how long a letter takes,
//! and is counted under its code instead.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::schedule::{Mode, Window};

/// The longest latency a histogram holds; anything longer is recorded as this.
const HIGHEST_US: u64 = 3_600_000_000;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A letter (HTTP 200 with one, or a letter reply on the broker).
    Letter,
    /// An answer that is not a letter: the HTTP status (0 when there is no HTTP, as for the
    /// broker-only system) and the error code the answer carried.
    Refused { status: u16, code: String },
    /// No answer at all: the connection failed or the client gave up.
    Failed { reason: String },
}

impl Outcome {
    /// The key an error is tallied under: `503 queue_full`, `reply_lost`, `no answer: timeout`;
    /// `None` for a letter.
    pub fn error_key(&self) -> Option<String> {
        match self {
            Self::Letter => None,
            Self::Refused { status: 0, code } => Some(code.clone()),
            Self::Refused { status, code } => Some(format!("{status} {code}")),
            Self::Failed { reason } => Some(format!("no answer: {reason}")),
        }
    }
}

/// One request as the load saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the request was meant to be sent, from the start of the step. In a closed loop that
    /// is when it was sent; in an open loop it is its slot in the schedule, which may be earlier
    /// than the actual send when the load fell behind (see [`super::schedule`]).
    pub intended: Duration,
    /// When its answer was complete, from the start of the step.
    pub completed: Duration,
    /// The time the stub LLM spent on it, measured at the stub (its own clock, microseconds);
    /// `None` when the system called no LLM or the stub's record did not turn up.
    pub provider: Option<Duration>,
    /// The provider time the system itself reported (the ingress's `timings_ms.llm`).
    pub reported_provider: Option<Duration>,
    pub outcome: Outcome,
}

impl Sample {
    /// End-to-end time, from the intended send to the complete answer.
    pub fn latency(&self) -> Duration {
        self.completed.saturating_sub(self.intended)
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// `None` for an empty histogram (a step with no letters has no latency).
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        let at = |quantile: f64| ms(histogram.value_at_quantile(quantile));
        Some(Self {
            count: histogram.len(),
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: ms(histogram.max()),
        })
    }
}

/// A histogram for microsecond latencies up to an hour.
pub fn histogram() -> Histogram<u64> {
    match Histogram::new_with_max(HIGHEST_US, 3) {
        Ok(histogram) => histogram,
        Err(_) => unreachable!("the bounds are constants that hdrhistogram accepts"),
    }
}

fn record(histogram: &mut Histogram<u64>, value: Duration) {
    histogram.saturating_record(u64::try_from(value.as_micros()).unwrap_or(u64::MAX));
}

/// The answers of a step, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub letters: u64,
    /// Every other answer by [`Outcome::error_key`], sorted.
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome.error_key() {
            None => self.letters += 1,
            Some(key) => *self.errors.entry(key).or_default() += 1,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// `503 queue_full x3, no answer: timeout x1`, or `-` when there were none.
    pub fn describe_errors(&self) -> String {
        if self.errors.is_empty() {
            return "-".to_owned();
        }
        self.errors
            .iter()
            .map(|(key, count)| format!("{key} x{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Everything the report shows for one step of one system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// Concurrent users (closed loop).
    pub users: Option<usize>,
    /// Requests per second offered (open loop).
    pub rate: Option<f64>,
    /// Requests counted in the window (see [`Window`]).
    pub requests: u64,
    pub tally: Tally,
    /// Letters completed inside the window, per second of it.
    pub throughput_rps: f64,
    /// End to end, over letters.
    pub latency_ms: Option<Percentiles>,
    /// End to end minus the stub's own time for the same request.
    pub overhead_ms: Option<Percentiles>,
    /// End to end minus the provider time the system reported itself (the ingress's
    /// `timings_ms.llm`, whole milliseconds): only for `letterbox`.
    pub overhead_reported_ms: Option<Percentiles>,
    /// Letters whose stub time was not found, so they have no overhead figure.
    pub overhead_missing: u64,
    /// The largest resident set size sampled during the step, per process, in MiB.
    pub peak_rss_mib: BTreeMap<String, f64>,
    /// CPU use during the measured window, per process, in percent of one core; `machine` is
    /// every process on the box (200% is both cores busy).
    pub cpu_percent: BTreeMap<String, f64>,
    /// The same as CPU milliseconds per letter of the window.
    pub cpu_ms_per_letter: BTreeMap<String, f64>,
}

/// Reduces the samples of one step to its result.
///
/// Which samples count depends on the mode: see [`Window::counts`]. Throughput counts the
/// letters completed inside the window, whatever the mode, per second of the window.
pub fn summarize(
    mode: Mode,
    window: Window,
    samples: &[Sample],
    peak_rss_kib: &BTreeMap<String, u64>,
) -> StepResult {
    let mut latency = histogram();
    let mut overhead = histogram();
    let mut overhead_reported = histogram();
    let mut tally = Tally::default();
    let mut requests = 0;
    let mut overhead_missing = 0;
    let mut completed_letters = 0u64;
    for sample in samples {
        if sample.outcome == Outcome::Letter && window.contains(sample.completed) {
            completed_letters += 1;
        }
        if !window.counts(mode, sample) {
            continue;
        }
        requests += 1;
        tally.add(&sample.outcome);
        if sample.outcome != Outcome::Letter {
            continue;
        }
        let elapsed = sample.latency();
        record(&mut latency, elapsed);
        match sample.provider {
            Some(provider) => record(&mut overhead, elapsed.saturating_sub(provider)),
            None => overhead_missing += 1,
        }
        if let Some(reported) = sample.reported_provider {
            record(&mut overhead_reported, elapsed.saturating_sub(reported));
        }
    }
    let seconds = window.length().as_secs_f64();
    let (users, rate) = match mode {
        Mode::Closed { users } => (Some(users), None),
        Mode::Open { rate } => (None, Some(rate)),
    };
    StepResult {
        users,
        rate,
        requests,
        tally,
        throughput_rps: if seconds > 0.0 {
            completed_letters as f64 / seconds
        } else {
            0.0
        },
        latency_ms: Percentiles::of(&latency),
        overhead_ms: Percentiles::of(&overhead),
        overhead_reported_ms: Percentiles::of(&overhead_reported),
        overhead_missing,
        peak_rss_mib: peak_rss_kib
            .iter()
            .map(|(name, kib)| (name.clone(), *kib as f64 / 1024.0))
            .collect(),
        cpu_percent: BTreeMap::new(),
        cpu_ms_per_letter: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn letter(intended: u64, completed: u64, provider: Option<u64>) -> Sample {
        Sample {
            intended: ms(intended),
            completed: ms(completed),
            provider: provider.map(ms),
            reported_provider: None,
            outcome: Outcome::Letter,
        }
    }

    #[test]
    fn percentiles_are_read_from_the_histogram_in_milliseconds() {
        let mut histogram = histogram();
        for micros in 1..=1000 {
            histogram.record(micros).unwrap();
        }
        assert_eq!(
            Percentiles::of(&histogram),
            Some(Percentiles {
                count: 1000,
                p50: 0.5,
                p90: 0.9,
                p95: 0.95,
                p99: 0.99,
                p999: 0.999,
                max: 1.0,
            })
        );
    }

    #[test]
    fn an_empty_histogram_has_no_percentiles() {
        assert_eq!(Percentiles::of(&histogram()), None);
    }

    #[test]
    fn errors_are_tallied_by_status_and_code() {
        let mut tally = Tally::default();
        let refused = |status, code: &str| Outcome::Refused {
            status,
            code: code.to_owned(),
        };
        for outcome in [
            Outcome::Letter,
            refused(503, "queue_full"),
            Outcome::Letter,
            refused(503, "queue_full"),
            refused(504, "timeout"),
            refused(0, "reply_lost"),
            Outcome::Failed {
                reason: "timeout".to_owned(),
            },
        ] {
            tally.add(&outcome);
        }
        assert_eq!(tally.letters, 2);
        assert_eq!(tally.error_count(), 5);
        assert_eq!(
            tally.describe_errors(),
            "503 queue_full x2, 504 timeout x1, no answer: timeout x1, reply_lost x1"
        );
        assert_eq!(Tally::default().describe_errors(), "-");
    }

    #[test]
    fn a_closed_loop_step_counts_what_completed_inside_the_window() {
        let window = Window::new(ms(1000), ms(2000));
        let samples = [
            // Warm-up: completed before the window.
            letter(0, 900, Some(800)),
            // Counted: 1 s end to end, 0.9 s at the stub.
            letter(1000, 2000, Some(900)),
            // Counted: sent in the warm-up, completed inside.
            letter(500, 2500, Some(1950)),
            // Counted, without a stub time.
            letter(2500, 2900, None),
            // Counted as an error.
            Sample {
                outcome: Outcome::Refused {
                    status: 503,
                    code: "overloaded".to_owned(),
                },
                ..letter(2600, 2610, None)
            },
            // Completed after the window: drained, not counted.
            letter(2800, 3200, Some(300)),
        ];
        let rss = BTreeMap::from([("producer".to_owned(), 51_200)]);
        let result = summarize(Mode::Closed { users: 4 }, window, &samples, &rss);
        assert_eq!(result.users, Some(4));
        assert_eq!(result.rate, None);
        assert_eq!(result.requests, 4);
        assert_eq!(result.tally.letters, 3);
        assert_eq!(result.tally.describe_errors(), "503 overloaded x1");
        // Three letters completed in a window of two seconds.
        assert_eq!(result.throughput_rps, 1.5);
        let latency = result.latency_ms.unwrap();
        assert_eq!(latency.count, 3);
        // 400 ms, 1000 ms and 2000 ms; hdrhistogram keeps 3 significant digits.
        assert_eq!(latency.p50, 1000.447);
        assert_eq!(latency.max, 2000.895);
        let overhead = result.overhead_ms.unwrap();
        // 100 ms and 50 ms: the one without a stub time has no overhead.
        assert_eq!(overhead.count, 2);
        assert_eq!(overhead.p50, 50.015);
        assert_eq!(overhead.max, 100.031);
        assert_eq!(result.overhead_missing, 1);
        assert_eq!(result.overhead_reported_ms, None);
        assert_eq!(result.peak_rss_mib["producer"], 50.0);
    }

    #[test]
    fn an_open_loop_step_counts_by_intended_send_time() {
        let window = Window::new(ms(1000), ms(1000));
        let samples = [
            // Intended in the warm-up: not counted although it completed inside.
            letter(900, 1100, Some(100)),
            // Intended inside, completed long after the window: counted, 1.5 s late.
            letter(1500, 3000, Some(100)),
            // Intended inside, completed inside.
            Sample {
                reported_provider: Some(ms(90)),
                ..letter(1800, 1900, Some(95))
            },
        ];
        let result = summarize(Mode::Open { rate: 2.0 }, window, &samples, &BTreeMap::new());
        assert_eq!(result.rate, Some(2.0));
        assert_eq!(result.requests, 2);
        // Letters completed in the window (1.1 s and 1.9 s), per second.
        assert_eq!(result.throughput_rps, 2.0);
        let latency = result.latency_ms.unwrap();
        assert_eq!(latency.count, 2);
        assert_eq!(latency.max, 1500.159);
        let reported = result.overhead_reported_ms.unwrap();
        assert_eq!(reported.count, 1);
        assert_eq!(reported.max, 10.007);
    }
}
