//! The provider's time, measured where the provider is: at the stub.
//!
//! Overhead is end-to-end time minus the time the provider spent on the request. Every system
//! under test reaches the same stub, so the same clock serves them all: a front in the stub's
//! process notes when a chat-completions request arrives (its head parsed) and when the last
//! byte of its answer has been handed to the connection (the end of a stream included), and
//! files that time under the request's **marker**. The load puts the marker, `BX` and ten
//! digits, in the resume text it sends; every system carries the resume into the prompt, so the
//! marker reaches the stub whatever wraps it (a job on the broker, LiteLLM's re-encoded body).
//!
//! The front also lets a run change the stub's latency between phases without moving its
//! address: it forwards each request to the stub router of the moment.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tower::ServiceExt as _;

/// What precedes the ten digits of a request's serial in the text it sends.
pub const MARKER_PREFIX: &[u8] = b"BX";
const MARKER_DIGITS: usize = 10;

/// The largest request body the front reads to find the marker.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// `BX0000000042` for serial 42.
pub fn marker(serial: u64) -> String {
    format!("BX{serial:010}")
}

/// The serial of the first marker in `body`, if any.
pub fn find_marker(body: &[u8]) -> Option<u64> {
    let mut from = 0;
    while let Some(offset) = body[from..]
        .windows(MARKER_PREFIX.len())
        .position(|window| window == MARKER_PREFIX)
    {
        let start = from + offset + MARKER_PREFIX.len();
        let digits = body.get(start..start + MARKER_DIGITS);
        if let Some(digits) = digits
            && digits.iter().all(u8::is_ascii_digit)
            // `BX` followed by more than ten digits is not a marker.
            && !body.get(start + MARKER_DIGITS).is_some_and(u8::is_ascii_digit)
        {
            return std::str::from_utf8(digits).ok()?.parse().ok();
        }
        from = start;
    }
    None
}

/// The provider time of each marked request, until the load collects it.
#[derive(Clone, Default)]
pub struct ProviderClock {
    times: Arc<Mutex<HashMap<u64, Duration>>>,
}

impl ProviderClock {
    fn record(&self, serial: u64, spent: Duration) {
        // A retried call (same marker) keeps the sum: the provider spent both.
        *self.lock().entry(serial).or_default() += spent;
    }

    /// Takes the time recorded for `serial`.
    pub fn take(&self, serial: u64) -> Option<Duration> {
        self.lock().remove(&serial)
    }

    /// Forgets everything (between steps: answers drained after a window are not collected).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Duration>> {
        self.times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The stub router of the moment, behind the timing front.
#[derive(Clone)]
pub struct Front {
    current: Arc<RwLock<Router>>,
    clock: ProviderClock,
}

impl Front {
    pub fn new(router: Router, clock: ProviderClock) -> Self {
        Self {
            current: Arc::new(RwLock::new(router)),
            clock,
        }
    }

    /// Answers the next requests with `router` (a stub with another latency).
    pub fn replace(&self, router: Router) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = router;
    }

    /// The service to serve: every request goes through [`forward`].
    pub fn app(&self) -> Router {
        Router::new().fallback(forward).with_state(self.clone())
    }

    fn router(&self) -> Router {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

async fn forward(State(front): State<Front>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    };
    let serial = find_marker(&bytes);
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = match front.router().oneshot(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    };
    let Some(serial) = serial else {
        return response;
    };
    let (parts, body) = response.into_parts();
    let timed = Timed {
        inner: body,
        pending: Some((front.clock.clone(), serial, started)),
    };
    Response::from_parts(parts, Body::new(timed))
}

/// An answer's body that records the provider time when it ends (or is dropped unfinished,
/// when the client went away: the provider still spent that long).
struct Timed {
    inner: Body,
    pending: Option<(ProviderClock, u64, Instant)>,
}

impl Timed {
    fn finish(&mut self) {
        if let Some((clock, serial, started)) = self.pending.take() {
            clock.record(serial, started.elapsed());
        }
    }
}

impl HttpBody for Timed {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_found_wherever_the_text_travels() {
        assert_eq!(marker(42), "BX0000000042");
        let json =
            br#"{"messages":[{"role":"user","content":"Avery Quinlan BX0000000042\nRust"}]}"#;
        assert_eq!(find_marker(json), Some(42));
        // A `BX` that is not followed by exactly ten digits is passed over.
        assert_eq!(
            find_marker(b"BOX BX12 BX00000000071 BX0000000007."),
            Some(7)
        );
        assert_eq!(find_marker(b"no marker here BX"), None);
        assert_eq!(find_marker(b""), None);
    }

    #[test]
    fn the_clock_hands_each_time_out_once_and_adds_up_retries() {
        let clock = ProviderClock::default();
        clock.record(7, Duration::from_millis(300));
        clock.record(7, Duration::from_millis(200));
        clock.record(8, Duration::from_millis(100));
        assert_eq!(clock.take(7), Some(Duration::from_millis(500)));
        assert_eq!(clock.take(7), None);
        clock.clear();
        assert_eq!(clock.take(8), None);
    }
}
