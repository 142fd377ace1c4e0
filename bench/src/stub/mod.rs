//! A stand-in for a paid OpenAI-compatible provider.
//!
//! It speaks the chat-completions wire format (plain and streamed), checks a bearer key, waits a
//! configurable latency, and answers with a cover letter assembled from the prompt (see
//! [`letter`]), so tests can assert both on what reached the "LLM" ([`StubHandle::requests`]) and
//! on what came back. Failures are injected deterministically: with `every = n`, the first call and
//! every n-th after it fail, so a test knows which attempt a retry will see succeed.
//!
//! - `mod.rs`: configuration, [`spawn`] and the handle tests hold.
//! - `server.rs`: the routes, the recorder and the streaming response.
//! - `letter.rs`: the letter writer, a pure function of the prompt.

pub mod letter;
mod server;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use server::{RecordedRequest, StubState, router};

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
}

impl StubConfig {
    /// No latency, no failures, the default model.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            latency: Latency::ZERO,
            model: DEFAULT_MODEL.to_owned(),
            failure: None,
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

/// A failure the stub answers instead of a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer `status` (400–599) with an OpenAI-style error body on calls 1, 1 + every,
    /// 1 + 2·every, …; `every = 1` fails every call. 429, 503 and 529 carry `Retry-After: 1`.
    /// Failures are answered at once, without the latency, as providers answer rate limits.
    Status { status: u16, every: u32 },
}

impl Failure {
    fn validate(&self) -> anyhow::Result<()> {
        match *self {
            Self::Status { status, every } => {
                if !(400..=599).contains(&status) {
                    anyhow::bail!("an injected failure status must be 400-599, got {status}");
                }
                if every == 0 {
                    anyhow::bail!("an injected failure needs every >= 1 (1 fails every call)");
                }
                Ok(())
            }
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
    let stop = CancellationToken::new();
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
    fn debug_output_hides_the_key() {
        let rendered = format!("{:?}", StubConfig::new("sk-very-secret"));
        assert!(!rendered.contains("sk-very-secret"), "{rendered}");
    }
}
