//! Logs and metrics: the one place that knows metric names' shape and how they are exported.
//!
//! Latencies go into HDR histograms (microsecond resolution, three significant figures) and are
//! exported on `/metrics` as Prometheus summaries with p50, p95 and p99. At LLM request rates a
//! mutex per histogram costs nothing measurable, and unlike `SyncHistogram` it never blocks a
//! runtime thread waiting for idle recorders.
//!
//! Label values come only from fixed sets chosen by the code (status codes, outcome names), never
//! from requests, so no document text or name can reach a metric.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tracing_subscriber::EnvFilter;

/// Libraries whose own log lines stay off whatever `LETTERBOX_LOG` asks for. The Vault client logs
/// every failed call at ERROR (expected 404s included) before Letterbox reports the failure once,
/// with what to do about it; at debug and trace the HTTP and AMQP libraries log requests, headers
/// and frames, where bearer tokens, secret ids and message bodies travel.
const QUIET_LIBRARIES: &str = "vaultrs=off,rustify=off,hyper=off,hyper_util=off,h2=off,\
                               reqwest=warn,rustls=warn,lapin=warn,amq_protocol=warn,tcp_stream=warn";

/// Starts the process's log output on stderr. `LETTERBOX_LOG` takes `tracing` filter directives
/// (`info`, `letterbox_consumer=debug`, …); the default is `info`. `LETTERBOX_LOG_FORMAT=json`
/// writes one JSON object a line (`timestamp`, `level`, `target`, `message` and the event's
/// fields: job ids, outcomes and timings, never document text) for a log pipeline; `text`, the
/// default, is for people. Any other value stops the process with exit status 2.
pub fn init_tracing() {
    init_tracing_at("info");
}

/// What every binary's `--help` says about the logging variables, which are read from the
/// environment only (logging starts before the command line is parsed). A macro, so a binary can
/// `concat!` its own environment-only variables to it.
#[macro_export]
macro_rules! log_help {
    () => {
        "From the environment only:
  LETTERBOX_LOG         log filter: `info` (default), `debug`, `letterbox_consumer=debug,info`, ...
  LETTERBOX_LOG_FORMAT  `text` (default) or `json`: one JSON object a line"
    };
}

/// [`log_help!`] as a constant.
pub const LOG_HELP: &str = log_help!();

/// The two shapes of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Reads `LETTERBOX_LOG_FORMAT`: unset or empty is `text`.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(crate::env::LOG_FORMAT) {
            Err(_) => Ok(Self::Text),
            Ok(value) => Self::parse(&value),
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!(
                "{} must be `text` or `json`, not {value:?}",
                crate::env::LOG_FORMAT
            )),
        }
    }
}

/// `init_tracing` with another default level (a command-line tool shows warnings only).
pub fn init_tracing_at(default: &str) {
    let format = LogFormat::from_env().unwrap_or_else(|message| {
        eprintln!("error: {message}");
        std::process::exit(2)
    });
    let wanted = std::env::var(crate::env::LOG).unwrap_or_else(|_| default.to_owned());
    let filter = EnvFilter::builder().parse_lossy(format!("{wanted},{QUIET_LIBRARIES}"));
    // A second call (tests start several apps in one process) keeps the first subscriber.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// Replaces the default panic output, which prints the panic message, with a log line that says
/// where the panic happened but not what it said: a parser's panic message can quote the document
/// it choked on. Binaries call this; tests keep the default so assertion messages show.
pub fn withhold_panic_messages() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(
            location = location.as_deref().unwrap_or("unknown"),
            "A thread panicked (message withheld: it may quote user data)"
        );
    }));
}

/// The quantiles every latency summary exports.
pub const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// A latency distribution with microsecond resolution, up to one hour.
pub struct LatencyHistogram {
    name: &'static str,
    help: &'static str,
    state: Mutex<(Histogram<u64>, u64)>,
}

const MAX_TRACKABLE_US: u64 = 3_600_000_000;

impl LatencyHistogram {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        // Bounds are constants within hdrhistogram's accepted range, so this cannot fail.
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("valid bounds");
        Self {
            name,
            help,
            state: Mutex::new((histogram, 0)),
        }
    }

    pub fn record(&self, elapsed: Duration) {
        self.record_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn record_us(&self, micros: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0.saturating_record(micros.max(1));
        state.1 = state.1.saturating_add(micros);
    }

    /// The value at quantile `q` (0.0–1.0); zero when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Duration::from_micros(state.0.value_at_quantile(q))
    }

    pub fn count(&self) -> u64 {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0.len()
    }

    /// Count and percentiles in milliseconds, for a JSON view.
    pub fn summary(&self) -> LatencySummary {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ms = |micros: u64| micros as f64 / 1_000.0;
        let count = state.0.len();
        let at = |q: f64| {
            if count == 0 {
                0.0
            } else {
                ms(state.0.value_at_quantile(q))
            }
        };
        LatencySummary {
            count,
            p50: at(0.5),
            p90: at(0.9),
            p95: at(0.95),
            p99: at(0.99),
            max: if count == 0 { 0.0 } else { ms(state.0.max()) },
        }
    }

    /// Appends this histogram as a Prometheus summary in seconds.
    pub fn render(&self, out: &mut String) {
        let (values, sum_us, count) = {
            let state = self
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let values: Vec<u64> = QUANTILES
                .iter()
                .map(|q| state.0.value_at_quantile(*q))
                .collect();
            (values, state.1, state.0.len())
        };
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} summary");
        for (q, value) in QUANTILES.iter().zip(values) {
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", seconds(value));
        }
        let _ = writeln!(out, "{name}_sum {}", seconds(sum_us));
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// A histogram's count and percentiles, in milliseconds (HDR precision: 3 significant digits).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatencySummary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

fn seconds(micros: u64) -> String {
    format!("{:.6}", micros as f64 / 1_000_000.0)
}

/// A counter with one label whose values the code chooses (e.g. `code="413"`).
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: Mutex<BTreeMap<&'static str, u64>>,
}

impl CounterVec {
    pub fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Self {
            name,
            help,
            label,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn inc(&self, value: &'static str) {
        let mut values = self
            .values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *values.entry(value).or_default() += 1;
    }

    pub fn get(&self, value: &str) -> u64 {
        let values = self
            .values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        values.get(value).copied().unwrap_or(0)
    }

    /// Every label value with its count.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn render(&self, out: &mut String) {
        let values = self
            .values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (name, label) = (self.name, self.label);
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} counter");
        for (value, count) in values.iter() {
            let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
        }
    }
}

/// A counter with two labels whose values the code chooses (e.g. `provider="fallback",
/// outcome="letter"`).
pub struct CounterVec2 {
    name: &'static str,
    help: &'static str,
    labels: (&'static str, &'static str),
    values: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl CounterVec2 {
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: (&'static str, &'static str),
    ) -> Self {
        Self {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn inc(&self, first: &'static str, second: &'static str) {
        let mut values = self
            .values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *values.entry((first, second)).or_default() += 1;
    }

    pub fn get(&self, first: &str, second: &str) -> u64 {
        let values = self
            .values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        values.get(&(first, second)).copied().unwrap_or(0)
    }

    pub fn render(&self, out: &mut String) {
        let values = self
            .values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (name, (first, second)) = (self.name, self.labels);
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} counter");
        for ((a, b), count) in values.iter() {
            let _ = writeln!(out, "{name}{{{first}=\"{a}\",{second}=\"{b}\"}} {count}");
        }
    }
}

/// A plain counter.
pub struct Counter {
    name: &'static str,
    help: &'static str,
    value: AtomicU64,
}

impl Counter {
    pub const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }

    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    pub fn render(&self, out: &mut String) {
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", self.get());
    }
}

/// A value that goes up and down, such as requests in flight.
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    value: AtomicI64,
}

impl Gauge {
    pub const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: AtomicI64::new(0),
        }
    }

    pub fn set(&self, value: i64) {
        self.value.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Adds one now and subtracts it again when the guard drops, whatever path is taken.
    pub fn track(&self) -> GaugeGuard<'_> {
        self.value.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(self)
    }

    pub fn render(&self, out: &mut String) {
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", self.get());
    }
}

pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.value.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A gauge whose value is a fraction, such as a utilization between 0 and 1.
pub struct FloatGauge {
    name: &'static str,
    help: &'static str,
    /// The value's bits (`f64::to_bits`): atomics have no floats.
    bits: AtomicU64,
}

impl FloatGauge {
    pub const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            // The bits of 0.0.
            bits: AtomicU64::new(0),
        }
    }

    pub fn set(&self, value: f64) {
        self.bits.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }

    /// Appends the gauge with up to four decimals (`0.8125`, `1`).
    pub fn render(&self, out: &mut String) {
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", decimal(self.get()));
    }
}

/// `value` rounded to four decimals, without trailing zeros; `NaN` and infinities as Prometheus
/// writes them.
fn decimal(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0" } else { text }.to_owned()
}

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reports_quantiles_sum_and_count_in_seconds() {
        let histogram = LatencyHistogram::new("letterbox_test_seconds", "Test.");
        for ms in 1..=100u64 {
            histogram.record(Duration::from_millis(ms));
        }
        let mut out = String::new();
        histogram.render(&mut out);
        assert!(
            out.contains("# TYPE letterbox_test_seconds summary\n"),
            "{out}"
        );
        assert!(
            out.contains("letterbox_test_seconds{quantile=\"0.5\"} 0.050015\n"),
            "{out}"
        );
        assert!(
            out.contains("letterbox_test_seconds{quantile=\"0.99\"} 0.099007\n"),
            "{out}"
        );
        assert!(
            out.contains("letterbox_test_seconds_sum 5.050000\n"),
            "{out}"
        );
        assert!(out.contains("letterbox_test_seconds_count 100\n"), "{out}");
    }

    #[test]
    fn counters_render_one_line_per_label_value() {
        let counter = CounterVec::new("letterbox_test_total", "Test.", "code");
        counter.inc("200");
        counter.inc("200");
        counter.inc("503");
        let mut out = String::new();
        counter.render(&mut out);
        assert!(
            out.contains("letterbox_test_total{code=\"200\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("letterbox_test_total{code=\"503\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn a_counter_with_two_labels_renders_each_pair() {
        let counter = CounterVec2::new("letterbox_test_total", "Test.", ("provider", "outcome"));
        counter.inc("primary", "server_error");
        counter.inc("fallback", "letter");
        counter.inc("primary", "server_error");
        let mut out = String::new();
        counter.render(&mut out);
        assert_eq!(
            out,
            "# HELP letterbox_test_total Test.\n# TYPE letterbox_test_total counter\n\
             letterbox_test_total{provider=\"fallback\",outcome=\"letter\"} 1\n\
             letterbox_test_total{provider=\"primary\",outcome=\"server_error\"} 2\n"
        );
        assert_eq!(counter.get("primary", "server_error"), 2);
        assert_eq!(counter.get("fallback", "server_error"), 0);
    }

    #[test]
    fn a_float_gauge_renders_up_to_four_decimals() {
        let gauge = FloatGauge::new("letterbox_test_ratio", "Test.");
        let mut out = String::new();
        gauge.render(&mut out);
        assert_eq!(
            out,
            "# HELP letterbox_test_ratio Test.\n# TYPE letterbox_test_ratio gauge\nletterbox_test_ratio 0\n"
        );
        for (value, text) in [
            (0.8125, "0.8125"),
            (1.0, "1"),
            (2.0 / 3.0, "0.6667"),
            (0.5, "0.5"),
            (f64::NAN, "NaN"),
        ] {
            gauge.set(value);
            let mut out = String::new();
            gauge.render(&mut out);
            assert!(
                out.ends_with(&format!("\nletterbox_test_ratio {text}\n")),
                "{out}"
            );
        }
    }

    #[test]
    fn a_gauge_guard_gives_back_what_it_took() {
        let gauge = Gauge::new("g", "Test.");
        {
            let _one = gauge.track();
            let _two = gauge.track();
            assert_eq!(gauge.get(), 2);
        }
        assert_eq!(gauge.get(), 0);
    }
}
