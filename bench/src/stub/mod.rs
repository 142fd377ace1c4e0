//! A stand-in for a paid LLM provider.
//!
//! It speaks OpenAI's chat-completions wire format and Anthropic's Messages API (each plain and
//! streamed, with its own errors), checks the key (a bearer key, or Anthropic's `x-api-key`), waits a
//! configurable latency, and answers with a cover letter assembled from the prompt (see
//! [`letter`]), so tests can assert both on what reached the "LLM" ([`StubHandle::requests`]) and
//! on what came back. Failures are injected deterministically: with `every = n`, the first call and
//! every n-th after it fail, so a test knows which attempt a retry will see succeed. Besides error
//! statuses, the stub fails the ways providers do mid-answer: a rate limit with each form of
//! `Retry-After`, a call that is never answered, a stream cut short, an error event after a 200.
//! A [`RateLimit`] makes it refuse calls over a steady rate with 429, as a provider enforces a
//! key's requests per minute; [`StubHandle::rate_limited_count`] and
//! [`StubHandle::letter_count`] tell a test how a client coped.
//!
//! - `mod.rs`: configuration, [`spawn`] and the handle tests hold.
//! - `server.rs`: the routes, the recorder and the streaming response.
//! - `letter.rs`: the letter writer, a pure function of the prompt.

mod anthropic;
pub mod letter;
mod server;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use server::{Api, RecordedRequest, StubState, router};

/// The model name the stub reports unless told otherwise.
pub const DEFAULT_MODEL: &str = "letterbox-stub-1";

/// How long [`StubHandle::shutdown`] lets in-flight answers finish before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The environment variables `letterbox-stub-llm` reads, each bound to one option.
pub mod env {
    pub const ADDR: &str = "STUB_LLM_ADDR";
    pub const KEY: &str = "STUB_LLM_KEY";
    pub const LATENCY_MS: &str = "STUB_LLM_LATENCY_MS";
    pub const LATENCY_MEDIAN_MS: &str = "STUB_LLM_LATENCY_MEDIAN_MS";
    pub const LATENCY_SIGMA: &str = "STUB_LLM_LATENCY_SIGMA";
    pub const MODEL: &str = "STUB_LLM_MODEL";
    pub const FAIL_STATUS: &str = "STUB_LLM_FAIL_STATUS";
    pub const FAIL_EVERY: &str = "STUB_LLM_FAIL_EVERY";
    pub const FAIL: &str = "STUB_LLM_FAIL";
    pub const RETRY_AFTER: &str = "STUB_LLM_RETRY_AFTER";
    pub const RATE_LIMIT: &str = "STUB_LLM_RATE_LIMIT";
    pub const RATE_BURST: &str = "STUB_LLM_RATE_BURST";
}

/// What the stub accepts and how it behaves.
#[derive(Clone)]
pub struct StubConfig {
    /// The bearer key it accepts; anything else is answered 401.
    pub key: String,
    pub latency: Latency,
    /// Reported in every answer, whatever model the request named.
    pub model: String,
    pub failure: Option<Failure>,
    pub rate_limit: Option<RateLimit>,
}

/// Calls per second the stub answers; calls over that get 429 at once with the wait until the
/// next would be accepted (GCRA: a steady rate, with up to `burst` calls at once after a pause).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `per_second`, with a burst of one second's worth of calls.
    pub fn per_second(per_second: NonZeroU32) -> Self {
        Self {
            per_second,
            burst: per_second,
        }
    }
}

impl StubConfig {
    /// No latency, no failures, the default model.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            latency: Latency::ZERO,
            model: DEFAULT_MODEL.to_owned(),
            failure: None,
            rate_limit: None,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.key.is_empty() {
            anyhow::bail!("the stub's key must not be empty");
        }
        if let Latency::LogNormal { sigma, .. } = self.latency
            && !(sigma.is_finite() && sigma >= 0.0)
        {
            anyhow::bail!("the latency's sigma must be a finite number >= 0, got {sigma}");
        }
        if let Some(failure) = &self.failure {
            failure.validate()?;
        }
        Ok(())
    }
}

// The key is a secret even in a stub: tests print configs in failure messages.
impl std::fmt::Debug for StubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StubConfig")
            .field("key", &"[redacted]")
            .field("latency", &self.latency)
            .field("model", &self.model)
            .field("failure", &self.failure)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// The time between a request and the end of its answer. A streamed answer spreads its chunks
/// over that time, as a model emits tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    /// Provider latencies are long-tailed: `median · e^(sigma·Z)` with Z standard normal.
    /// `sigma = 0.5` puts p99 at about 3.2 × the median.
    LogNormal {
        median: Duration,
        sigma: f64,
    },
}

impl Latency {
    pub const ZERO: Self = Self::Fixed(Duration::ZERO);

    /// One latency, drawn with `normal` as the standard normal variate.
    fn with_normal(&self, normal: f64) -> Duration {
        match *self {
            Self::Fixed(latency) => latency,
            Self::LogNormal { median, sigma } => {
                // A sigma or a variate absurd enough to overflow a Duration means "very slow".
                Duration::try_from_secs_f64(median.as_secs_f64() * (sigma * normal).exp())
                    .unwrap_or(Duration::from_secs(3600))
            }
        }
    }
}

/// A failure the stub answers instead of a letter, on calls 1, 1 + every, 1 + 2·every, …
/// (`every = 1` fails every call), counted from the start or from the last
/// [`StubHandle::set_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer `status` (400–599) with an error body in the called API's shape (OpenAI's, or
    /// Anthropic's, typed by status: `rate_limit_error`, `overloaded_error`, …). 429, 503 and 529 carry
    /// `Retry-After: 1`. Answered at once, without the latency, as providers answer rate limits.
    Status { status: u16, every: u32 },
    /// Answer 429 `rate_limit_exceeded` at once, telling the client when to come back in one of
    /// the forms providers use (see [`RetryAfter`]).
    RateLimited { every: u32, retry_after: RetryAfter },
    /// Take the request and never answer: the connection stays open until the client gives up
    /// or the stub shuts down (which closes it without a response).
    Hang { every: u32 },
    /// Status 200, then the answer stops short, paced by the latency: a stream sends its opening
    /// events (OpenAI's role chunk; Anthropic's `message_start`, `content_block_start` and `ping`)
    /// and [`CUT_AFTER_CHUNKS`] content chunks and ends, with no finish (no `finish_reason` and no
    /// `data: [DONE]`; no `message_delta` and no `message_stop`); a plain answer's JSON body ends
    /// inside the letter.
    CutStream { every: u32 },
    /// Status 200, then an error, paced by the latency: a stream sends its opening events and
    /// [`CUT_AFTER_CHUNKS`] content chunks, then `data: {"error": {…, "type": "server_error",
    /// "code": "internal_error"}}` (as OpenAI reports a failure mid-stream) or Anthropic's
    /// `event: error` with `{"type": "error", "error": {"type": "overloaded_error", …}}`, and
    /// ends; a plain answer's body is that error object.
    ErrorEvent { every: u32 },
}

/// How many content chunks a [`Failure::CutStream`] or [`Failure::ErrorEvent`] stream sends.
pub const CUT_AFTER_CHUNKS: usize = 5;

impl Failure {
    /// The share of calls that fail: one in `every`.
    pub fn every(&self) -> u32 {
        match *self {
            Self::Status { every, .. }
            | Self::RateLimited { every, .. }
            | Self::Hang { every }
            | Self::CutStream { every }
            | Self::ErrorEvent { every } => every,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Self::Status { status, .. } = *self
            && !(400..=599).contains(&status)
        {
            anyhow::bail!("an injected failure status must be 400-599, got {status}");
        }
        if self.every() == 0 {
            anyhow::bail!("an injected failure needs every >= 1 (1 fails every call)");
        }
        Ok(())
    }
}

/// When a rate-limited client may come back, in the forms providers send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: N` (seconds).
    Seconds(u32),
    /// `Retry-After: <IMF-fixdate N seconds from now>`, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    HttpDate(u32),
    /// `retry-after-ms: N` (OpenAI's), and no `Retry-After`.
    Millis(u32),
    /// No hint at all.
    None,
}

/// `1s` (or `1`), `1500ms`, `date+2s`, `none`: the forms `--retry-after` takes.
impl std::str::FromStr for RetryAfter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid =
            || format!("invalid Retry-After {text:?}: expected e.g. 1s, 1500ms, date+2s or none");
        let text = text.trim();
        if text == "none" {
            return Ok(Self::None);
        }
        let number = |digits: &str| digits.parse::<u32>().map_err(|_| invalid());
        if let Some(seconds) = text.strip_prefix("date+") {
            return Ok(Self::HttpDate(number(
                seconds.strip_suffix('s').unwrap_or(seconds),
            )?));
        }
        if let Some(millis) = text.strip_suffix("ms") {
            return Ok(Self::Millis(number(millis)?));
        }
        Ok(Self::Seconds(number(
            text.strip_suffix('s').unwrap_or(text),
        )?))
    }
}

impl std::fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Seconds(seconds) => write!(f, "{seconds}s"),
            Self::HttpDate(seconds) => write!(f, "date+{seconds}s"),
            Self::Millis(millis) => write!(f, "{millis}ms"),
            Self::None => f.write_str("none"),
        }
    }
}

/// A running stub. Dropping it stops the server; [`StubHandle::shutdown`] also waits for it.
pub struct StubHandle {
    pub addr: SocketAddr,
    /// What a client uses as its OpenAI base URL: `http://ADDR/v1`.
    pub base_url: String,
    state: StubState,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    /// Cancels the server when the handle is dropped without `shutdown`, so a failing test cannot
    /// leave a listener behind.
    _stop_on_drop: DropGuard,
}

impl StubHandle {
    /// The most recent requests (up to the last 1,000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Requests received since the start, including those no longer kept by `requests`.
    pub fn request_count(&self) -> usize {
        self.state.request_count()
    }

    /// Calls answered 429, by the rate limit or by an injected failure.
    pub fn rate_limited_count(&self) -> u64 {
        self.state.rate_limited_count()
    }

    /// Calls answered with a whole letter: past every check, with no injected failure.
    pub fn letter_count(&self) -> u64 {
        self.state.letter_count()
    }

    /// Replaces the accepted key from the next call on (a rotation at the provider).
    pub fn set_key(&self, key: impl Into<String>) {
        self.state.set_key(key);
    }

    /// Changes the injected failure from the next call on; the count of calls restarts, so the
    /// next call is the first to fail.
    pub fn set_failure(&self, failure: Option<Failure>) -> anyhow::Result<()> {
        self.state.set_failure(failure)
    }

    /// Stops accepting connections, lets answers in flight finish for a few seconds, then stops.
    pub async fn shutdown(self) {
        let Self {
            stop, mut server, ..
        } = self;
        stop.cancel();
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "Stub LLM server failed"),
            Ok(Err(error)) => tracing::warn!(%error, "Stub LLM server task failed"),
            Err(_) => {
                tracing::warn!(
                    grace_ms = SHUTDOWN_GRACE.as_millis(),
                    "Stub LLM answers still in flight after the grace period; dropping them"
                );
                server.abort();
            }
        }
    }
}

/// Starts the stub on `addr` (port 0 picks a free port) and returns once it accepts connections.
pub async fn spawn(config: StubConfig, addr: SocketAddr) -> anyhow::Result<StubHandle> {
    let (app, state) = router(config)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not bind the stub LLM to {addr}"))?;
    let addr = listener
        .local_addr()
        .context("could not read the stub LLM's address")?;
    // One token stops the server and releases the calls a `Hang` holds, which would otherwise
    // keep the graceful shutdown waiting for answers that never come.
    let stop = state.stop_token();
    // Each event of a stream goes out when written, as a provider's do, not held for an ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let serve = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    let server = tokio::spawn(async move { serve.await });
    Ok(StubHandle {
        addr,
        base_url: format!("http://{addr}/v1"),
        state,
        _stop_on_drop: stop.clone().drop_guard(),
        stop,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_normal_latency_is_the_median_at_the_centre_and_grows_with_sigma() {
        let latency = Latency::LogNormal {
            median: Duration::from_millis(1000),
            sigma: 0.5,
        };
        assert_eq!(latency.with_normal(0.0), Duration::from_millis(1000));
        // e^(0.5 · 2) = e
        assert_eq!(latency.with_normal(2.0).as_millis(), 2718);
    }

    #[test]
    fn invalid_failures_are_refused_before_serving() {
        let mut config = StubConfig::new("k");
        config.failure = Some(Failure::Status {
            status: 200,
            every: 1,
        });
        assert!(config.validate().is_err());
        config.failure = Some(Failure::Status {
            status: 500,
            every: 0,
        });
        assert!(config.validate().is_err());
        config.failure = Some(Failure::Status {
            status: 500,
            every: 2,
        });
        assert!(config.validate().is_ok());
    }

    #[test]
    fn every_failure_needs_every_of_at_least_one() {
        let kinds = [
            Failure::RateLimited {
                every: 0,
                retry_after: RetryAfter::None,
            },
            Failure::Hang { every: 0 },
            Failure::CutStream { every: 0 },
            Failure::ErrorEvent { every: 0 },
        ];
        for kind in kinds {
            let mut config = StubConfig::new("k");
            config.failure = Some(kind);
            assert!(config.validate().is_err(), "{kind:?}");
        }
        let mut config = StubConfig::new("k");
        config.failure = Some(Failure::Hang { every: 1 });
        assert!(config.validate().is_ok());
    }

    #[test]
    fn retry_after_reads_and_writes_its_command_line_forms() {
        let forms = [
            ("1s", RetryAfter::Seconds(1)),
            ("date+2s", RetryAfter::HttpDate(2)),
            ("1500ms", RetryAfter::Millis(1500)),
            ("none", RetryAfter::None),
        ];
        for (text, value) in forms {
            assert_eq!(text.parse::<RetryAfter>(), Ok(value));
            assert_eq!(value.to_string(), text);
        }
        assert_eq!("3".parse::<RetryAfter>(), Ok(RetryAfter::Seconds(3)));
        assert_eq!("date+2".parse::<RetryAfter>(), Ok(RetryAfter::HttpDate(2)));
        assert!("soon".parse::<RetryAfter>().is_err());
        assert!("-1s".parse::<RetryAfter>().is_err());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let rendered = format!("{:?}", StubConfig::new("sk-very-secret"));
        assert!(!rendered.contains("sk-very-secret"), "{rendered}");
    }
}
