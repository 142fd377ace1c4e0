//! The stub's HTTP surface: `POST /v1/chat/completions` and Anthropic's `POST /v1/messages`
//! (both also without `/v1`), `GET /v1/models`, `GET /healthz`, and OpenAI-shaped errors for
//! everything else. Both APIs share the checks, the failures and the letter; only the shapes
//! differ (Anthropic's are in `anthropic.rs`).
//!
//! Checks run in the provider's order: key, then body, then the rate limit, then the injected
//! failure, then the latency. Every request is recorded before any check can turn it away, because tests assert on
//! what was *sent*, including what a real provider would have refused.
//!
//! Failures that strike after a 200 (a cut stream, an error event) reuse the letter's own chunks
//! and pacing, so a client sees exactly the start of the answer it would have had.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{CUT_AFTER_CHUNKS, Failure, Latency, RateLimit, RetryAfter, StubConfig};
use super::{anthropic, letter};

/// How many requests the recorder keeps; a load test must not grow the stub without bound.
const RECORD_LIMIT: usize = 1_000;

/// OpenAI's rule of thumb for English: about four characters per token.
const CHARS_PER_TOKEN: usize = 4;

/// The API a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Api {
    /// `POST /v1/chat/completions`.
    #[default]
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
}

/// One request as it reached the stub. The key is never kept, only whether it matched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedRequest {
    pub api: Api,
    pub model: String,
    /// The system (or developer) messages, joined by a blank line.
    pub system: String,
    /// The user messages, joined by a blank line.
    pub user: String,
    pub stream: bool,
    pub authorized: bool,
    /// `max_tokens`, or else `max_completion_tokens`.
    pub max_tokens: Option<u32>,
    /// The `anthropic-version` header of a Messages request.
    pub anthropic_version: Option<String>,
}

/// The stub's shared state: what routes read and what a test inspects.
#[derive(Clone)]
pub struct StubState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Mutable, like a provider's: rotating a key there makes the old one stop working.
    key: Mutex<String>,
    model: String,
    latency: Latency,
    failure: Mutex<Option<Failure>>,
    /// Calls that got as far as failure injection since the failure was set; decides which fail.
    calls: AtomicU64,
    received: AtomicUsize,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    completions: AtomicU64,
    /// The rate calls are answered at, and the GCRA state enforcing it.
    rate: Option<(RateLimit, DefaultDirectRateLimiter)>,
    /// Calls answered 429, whatever said so.
    rate_limited: AtomicU64,
    /// Calls answered with a whole letter.
    letters: AtomicU64,
    /// Jitter only needs to look random; a clock-seeded xorshift avoids a dependency.
    rng: Mutex<XorShift>,
    /// Cancelled when the stub stops; releases the calls a `Hang` holds.
    stop: CancellationToken,
}

impl StubState {
    fn new(config: StubConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                key: Mutex::new(config.key),
                model: config.model,
                latency: config.latency,
                failure: Mutex::new(config.failure),
                calls: AtomicU64::new(0),
                received: AtomicUsize::new(0),
                recorded: Mutex::new(VecDeque::with_capacity(64)),
                completions: AtomicU64::new(0),
                rate: config.rate_limit.map(|limit| {
                    let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
                    (limit, DefaultDirectRateLimiter::direct(quota))
                }),
                rate_limited: AtomicU64::new(0),
                letters: AtomicU64::new(0),
                rng: Mutex::new(XorShift::from_clock()),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// The most recent requests (up to the last 1,000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.recorded).iter().cloned().collect()
    }

    /// Requests received since the start, including those no longer kept by `requests`.
    pub fn request_count(&self) -> usize {
        self.inner.received.load(Ordering::SeqCst)
    }

    /// Calls answered 429, by the rate limit or by an injected failure.
    pub fn rate_limited_count(&self) -> u64 {
        self.inner.rate_limited.load(Ordering::SeqCst)
    }

    /// Calls answered with a whole letter.
    pub fn letter_count(&self) -> u64 {
        self.inner.letters.load(Ordering::SeqCst)
    }

    /// Replaces the accepted key, as rotating it at a provider does: the old key stops working.
    pub fn set_key(&self, key: impl Into<String>) {
        *lock(&self.inner.key) = key.into();
    }

    /// Changes the injected failure; the next call is the first of the new cycle.
    pub fn set_failure(&self, failure: Option<Failure>) -> anyhow::Result<()> {
        if let Some(failure) = &failure {
            failure.validate()?;
        }
        let mut current = lock(&self.inner.failure);
        *current = failure;
        self.inner.calls.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// The token that stops a server of this state: [`super::spawn`] shuts down on it, and calls
    /// held by a `Hang` end with it (their connections close without an answer).
    pub fn stop_token(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    fn record(&self, request: RecordedRequest) {
        let mut recorded = lock(&self.inner.recorded);
        if recorded.len() == RECORD_LIMIT {
            recorded.pop_front();
        }
        recorded.push_back(request);
        self.inner.received.fetch_add(1, Ordering::SeqCst);
    }

    /// `None` when the rate limit (if any) takes this call; else the limit and how long until
    /// it would take one.
    fn over_rate(&self) -> Option<(RateLimit, Duration)> {
        let (limit, limiter) = self.inner.rate.as_ref()?;
        let not_until = limiter.check().err()?;
        Some((
            *limit,
            not_until.wait_time_from(DefaultClock::default().now()),
        ))
    }

    fn count_rate_limited(&self) {
        self.inner.rate_limited.fetch_add(1, Ordering::SeqCst);
    }

    /// The failure this call answers, if it is one of the failing calls.
    fn injected_failure(&self) -> Option<Failure> {
        let failure = (*lock(&self.inner.failure))?;
        let call = self.inner.calls.fetch_add(1, Ordering::SeqCst);
        call.is_multiple_of(u64::from(failure.every().max(1)))
            .then_some(failure)
    }

    fn latency(&self) -> Duration {
        let normal = lock(&self.inner.rng).standard_normal();
        self.inner.latency.with_normal(normal)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|key| key.trim() == *lock(&self.inner.key))
    }

    /// Anthropic's way: the key alone in `x-api-key`.
    fn authorized_anthropic(&self, headers: &HeaderMap) -> bool {
        headers
            .get(anthropic::KEY_HEADER)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|key| key.trim() == *lock(&self.inner.key))
    }
}

/// A poisoned lock only means a test thread panicked mid-update; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The stub's routes and the state behind them, for callers that serve it themselves.
pub fn router(config: StubConfig) -> anyhow::Result<(Router, StubState)> {
    config.validate()?;
    let state = StubState::new(config);
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/messages", post(messages))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(unknown_route)
        .with_state(state.clone());
    Ok((app, state))
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
pub(super) struct Message {
    pub(super) role: String,
    /// A string, an array of content parts, or null.
    #[serde(default)]
    pub(super) content: Value,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

impl ChatRequest {
    fn max_tokens(&self) -> Option<u32> {
        self.max_tokens.or(self.max_completion_tokens)
    }

    fn text_of(&self, roles: &[&str]) -> String {
        let parts: Vec<String> = self
            .messages
            .iter()
            .filter(|message| roles.contains(&message.role.as_str()))
            .map(|message| content_text(&message.content))
            .collect();
        parts.join("\n\n")
    }

    fn system(&self) -> String {
        self.text_of(&["system", "developer"])
    }

    fn user(&self) -> String {
        self.text_of(&["user"])
    }

    fn prompt_chars(&self) -> usize {
        self.messages
            .iter()
            .map(|message| content_text(&message.content).chars().count())
            .sum()
    }
}

pub(super) fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// What the stub answers from, whichever API the request came in: the prompt and the options
/// that shape the letter.
pub(super) struct Call {
    pub(super) system: String,
    pub(super) user: String,
    pub(super) stream: bool,
    pub(super) max_tokens: Option<u32>,
    pub(super) prompt_chars: usize,
    /// OpenAI's `stream_options.include_usage`.
    pub(super) include_usage: bool,
}

impl ChatRequest {
    fn call(&self) -> Call {
        Call {
            system: self.system(),
            user: self.user(),
            stream: self.stream.unwrap_or(false),
            max_tokens: self.max_tokens(),
            prompt_chars: self.prompt_chars(),
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|options| options.include_usage),
        }
    }
}

async fn chat_completions(
    State(state): State<StubState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorized = state.authorized(&headers);
    let parsed = serde_json::from_slice::<ChatRequest>(&body);
    state.record(match &parsed {
        Ok(request) => RecordedRequest {
            model: request.model.clone(),
            system: request.system(),
            user: request.user(),
            stream: request.stream.unwrap_or(false),
            authorized,
            max_tokens: request.max_tokens(),
            ..RecordedRequest::default()
        },
        Err(_) => RecordedRequest {
            authorized,
            ..RecordedRequest::default()
        },
    });

    if !authorized {
        tracing::debug!(status = 401, "Refused a request without the stub's key");
        return api_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            Some("invalid_api_key"),
        );
    }
    let request = match parsed {
        Ok(request) => request,
        Err(error) => {
            let message = format!("We could not parse the JSON body of your request. ({error})");
            return api_error(StatusCode::BAD_REQUEST, &message, None);
        }
    };
    if let Some(problem) = invalid(&request) {
        return api_error(StatusCode::BAD_REQUEST, problem, None);
    }
    serve(&state, Api::OpenAi, &request.call()).await
}

/// Anthropic's `POST /v1/messages`: the key in `x-api-key`, an `anthropic-version`, then the same
/// checks, failures and letters as chat completions, in Anthropic's shapes.
async fn messages(State(state): State<StubState>, headers: HeaderMap, body: Bytes) -> Response {
    let authorized = state.authorized_anthropic(&headers);
    let version = headers
        .get(anthropic::VERSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let parsed = serde_json::from_slice::<anthropic::MessagesRequest>(&body);
    state.record(match &parsed {
        Ok(request) => RecordedRequest {
            api: Api::Anthropic,
            model: request.model.clone(),
            system: request.system(),
            user: request.user(),
            stream: request.stream.unwrap_or(false),
            authorized,
            max_tokens: request.max_tokens,
            anthropic_version: version.clone(),
        },
        Err(_) => RecordedRequest {
            api: Api::Anthropic,
            authorized,
            anthropic_version: version.clone(),
            ..RecordedRequest::default()
        },
    });

    let refuse = |status, message: &str| error_response(Api::Anthropic, status, message, "", None);
    if !authorized {
        tracing::debug!(status = 401, "Refused a request without the stub's key");
        return refuse(StatusCode::UNAUTHORIZED, "invalid x-api-key");
    }
    if version.is_none() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "anthropic-version: header is required",
        );
    }
    let request = match parsed {
        Ok(request) => request,
        Err(error) => {
            let message = format!("There was an issue with your request body: {error}");
            return refuse(StatusCode::BAD_REQUEST, &message);
        }
    };
    if let Some(problem) = request.invalid() {
        return refuse(StatusCode::BAD_REQUEST, problem);
    }
    serve(&state, Api::Anthropic, &request.call()).await
}

/// The answer to a well-formed, authorised call: the rate limit, then the injected failure,
/// then the latency and the letter, in the shapes of `api`.
async fn serve(state: &StubState, api: Api, call: &Call) -> Response {
    if let Some((limit, wait)) = state.over_rate() {
        tracing::debug!(
            wait_ms = wait.as_millis(),
            "Refused a call over the rate limit"
        );
        state.count_rate_limited();
        return over_rate(api, limit, wait);
    }
    let failure = state.injected_failure();
    match failure {
        Some(Failure::Status { status, .. }) => {
            // Validated to be 400-599 when the failure was set.
            if let Ok(status) = StatusCode::from_u16(status) {
                tracing::debug!(status = status.as_u16(), "Answered an injected failure");
                if status == StatusCode::TOO_MANY_REQUESTS {
                    state.count_rate_limited();
                }
                return injected_error(api, status);
            }
        }
        Some(Failure::RateLimited { retry_after, .. }) => {
            tracing::debug!(%retry_after, "Answered an injected rate limit");
            state.count_rate_limited();
            return rate_limited(api, retry_after, SystemTime::now());
        }
        Some(Failure::Hang { .. }) => {
            tracing::debug!("Holding a call without answering");
            state.inner.stop.cancelled().await;
            return closed_without_answer();
        }
        Some(Failure::CutStream { .. } | Failure::ErrorEvent { .. }) | None => {}
    }

    let latency = state.latency();
    let answer = Answer::new(state, api, call);
    match (failure, call.stream) {
        (Some(Failure::CutStream { .. }), true) => {
            tracing::debug!(latency_ms = latency.as_millis(), "Streaming a cut answer");
            return answer.broken_stream(latency, None).into_response();
        }
        (Some(Failure::ErrorEvent { .. }), true) => {
            tracing::debug!(latency_ms = latency.as_millis(), "Streaming an error event");
            let error = stream_error(api);
            return answer.broken_stream(latency, Some(error)).into_response();
        }
        (Some(Failure::CutStream { .. }), false) => {
            tokio::time::sleep(latency).await;
            tracing::debug!(
                latency_ms = latency.as_millis(),
                "Answered a truncated body"
            );
            return json_text(answer.truncated_completion());
        }
        (Some(Failure::ErrorEvent { .. }), false) => {
            tokio::time::sleep(latency).await;
            tracing::debug!(
                latency_ms = latency.as_millis(),
                "Answered an error with 200"
            );
            return json_text(stream_error(api).1);
        }
        _ => {}
    }
    state.inner.letters.fetch_add(1, Ordering::SeqCst);
    if call.stream {
        tracing::debug!(
            latency_ms = latency.as_millis(),
            stream = true,
            "Streaming a letter"
        );
        answer.stream(latency, call.include_usage).into_response()
    } else {
        // A 0 ms stub answers at once rather than through the timer.
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        tracing::debug!(
            latency_ms = latency.as_millis(),
            stream = false,
            "Answered a letter"
        );
        axum::Json(answer.completion()).into_response()
    }
}

/// The checks a provider makes on a well-formed body, so a client bug shows up here first.
fn invalid(request: &ChatRequest) -> Option<&'static str> {
    if request.messages.is_empty() {
        return Some("[] is too short - 'messages'");
    }
    if request.max_tokens() == Some(0) {
        return Some("max_tokens must be at least 1");
    }
    if request
        .temperature
        .is_some_and(|t| !(0.0..=2.0).contains(&t))
    {
        return Some("temperature must be between 0 and 2");
    }
    None
}

/// One event of a stream: its name (Anthropic names every event; OpenAI none) and its data.
pub(super) type StreamEvent = (Option<&'static str>, String);

/// One letter, ready to be sent whole or as chunks, in the shapes of its API.
pub(super) struct Answer {
    pub(super) api: Api,
    pub(super) id: String,
    pub(super) created: u64,
    pub(super) model: String,
    pub(super) content: String,
    /// OpenAI's name for how the letter ended: `stop` or `length`.
    pub(super) finish_reason: &'static str,
    pub(super) prompt_tokens: usize,
}

impl Answer {
    fn new(state: &StubState, api: Api, call: &Call) -> Self {
        let full = letter::compose(&call.system, &call.user);
        let (content, finish_reason) = match call.max_tokens {
            Some(limit) => cut_to_tokens(&full, limit),
            None => (full, "stop"),
        };
        let serial = state.inner.completions.fetch_add(1, Ordering::SeqCst);
        Self {
            api,
            id: match api {
                Api::OpenAi => format!("chatcmpl-stub{serial:011}"),
                Api::Anthropic => format!("msg_stub{serial:011}"),
            },
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs()),
            model: state.inner.model.clone(),
            finish_reason,
            prompt_tokens: call.prompt_chars.div_ceil(CHARS_PER_TOKEN),
            content,
        }
    }

    pub(super) fn completion_tokens(&self) -> usize {
        self.content.chars().count().div_ceil(CHARS_PER_TOKEN)
    }

    fn usage(&self) -> Value {
        let completion_tokens = self.completion_tokens();
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        })
    }

    fn completion(&self) -> Value {
        self.completion_of(&self.content)
    }

    fn completion_of(&self, content: &str) -> Value {
        if self.api == Api::Anthropic {
            return anthropic::message(self, content);
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": content },
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage(),
        })
    }

    /// The body of a plain answer cut inside the letter: the JSON of a completion up to the end
    /// of its first [`CUT_AFTER_CHUNKS`] chunks, with nothing closed.
    fn truncated_completion(&self) -> String {
        let prefix = cut_prefix(&self.content);
        let full = self.completion_of(&prefix).to_string();
        // The escaped prefix without its closing quote: the string is left open.
        let field = match self.api {
            Api::OpenAi => "content",
            Api::Anthropic => "text",
        };
        let marker = format!("\"{field}\":{}", json!(prefix));
        let marker = &marker[..marker.len() - 1];
        match full.find(marker) {
            Some(start) => full[..start + marker.len()].to_owned(),
            // Unreachable in practice; half the text, cut at a character.
            None => full.chars().take(full.chars().count() / 2).collect(),
        }
    }

    /// The start of a stream that goes wrong: its opening events and the first
    /// [`CUT_AFTER_CHUNKS`] content chunks at the times a whole stream would send them, then
    /// `error` as a last event when given, then the end of the body: no finish (OpenAI's
    /// `finish_reason` and `[DONE]`, Anthropic's `message_delta` and `message_stop`).
    fn broken_stream(
        self,
        latency: Duration,
        error: Option<StreamEvent>,
    ) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
        let mut plan = self.plan(latency, false);
        let opening = match self.api {
            Api::OpenAi => 1,
            Api::Anthropic => anthropic::OPENING_EVENTS,
        };
        plan.truncate(opening + cut_chunks(&self.content));
        if let Some((name, data)) = error {
            let due = plan.last().map_or(Duration::ZERO, |(due, _)| *due);
            plan.push((due, (name, data)));
        }
        paced(plan)
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> StreamEvent {
        let data = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
        });
        (None, data.to_string())
    }

    /// The opening events first, then one word per chunk, due at evenly spaced points of the
    /// latency so the last word lands when a non-streamed answer would have.
    fn stream(
        self,
        latency: Duration,
        include_usage: bool,
    ) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
        paced(self.plan(latency, include_usage))
    }

    /// When each word of the letter is due, from the start of the answer.
    pub(super) fn word_times(&self, latency: Duration) -> Vec<(Duration, &str)> {
        let words = letter::chunks(&self.content);
        let count = words.len().max(1) as f64;
        words
            .into_iter()
            .enumerate()
            .map(|(index, word)| (latency.mul_f64((index + 1) as f64 / count), word))
            .collect()
    }

    /// Every event of the stream with the time it is due, from the start of the answer.
    fn plan(&self, latency: Duration, include_usage: bool) -> Vec<(Duration, StreamEvent)> {
        if self.api == Api::Anthropic {
            return anthropic::plan(self, latency);
        }
        let words = self.word_times(latency);
        let mut plan = Vec::with_capacity(words.len() + 4);
        plan.push((
            Duration::ZERO,
            self.chunk(json!({ "role": "assistant", "content": "" }), None),
        ));
        for (due, word) in words {
            plan.push((due, self.chunk(json!({ "content": word }), None)));
        }
        plan.push((latency, self.chunk(json!({}), Some(self.finish_reason))));
        if include_usage {
            let usage = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage(),
            });
            plan.push((latency, (None, usage.to_string())));
        }
        plan.push((latency, (None, "[DONE]".to_owned())));
        plan
    }
}

/// The events of `plan`, each sent when it is due.
fn paced(
    plan: Vec<(Duration, StreamEvent)>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let start = tokio::time::Instant::now();
    let events = futures_util::stream::iter(plan).then(move |(due, (name, data))| async move {
        tokio::time::sleep_until(start + due).await;
        // The name first, as Anthropic writes it: `event: …` then `data: …`.
        let event = match name {
            Some(name) => Event::default().event(name),
            None => Event::default(),
        };
        Ok(event.data(data))
    });
    Sse::new(events)
}

/// How many content chunks a broken answer keeps: [`CUT_AFTER_CHUNKS`], and always fewer than
/// the whole letter, so something is visibly missing.
fn cut_chunks(content: &str) -> usize {
    CUT_AFTER_CHUNKS.min(letter::chunks(content).len().saturating_sub(1))
}

/// The text of the content chunks a broken answer keeps.
fn cut_prefix(content: &str) -> String {
    letter::chunks(content)
        .into_iter()
        .take(cut_chunks(content))
        .collect()
}

/// What a provider sends as an event when a stream fails after its 200, and here also as the
/// body of a plain answer that fails the same way: OpenAI's `{"error": {…, "code":
/// "internal_error"}}`, Anthropic's `event: error` with an `overloaded_error`.
fn stream_error(api: Api) -> StreamEvent {
    match api {
        Api::OpenAi => {
            let data = json!({ "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": null,
                "code": "internal_error",
            }});
            (None, data.to_string())
        }
        Api::Anthropic => (
            Some("error"),
            anthropic::error_body("overloaded_error", "Overloaded").to_string(),
        ),
    }
}

/// Status 200 with `text` as a JSON body, whether or not it parses.
fn json_text(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}

/// A response whose body fails before its first byte: hyper then drops the connection without
/// writing the status line, so the client sees the connection close, never an answer.
fn closed_without_answer() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("the stub LLM is shutting down"))
    });
    Body::from_stream(failing).into_response()
}

/// A letter cut at a word boundary to fit `limit` tokens, as a model stops at `max_tokens`.
fn cut_to_tokens(letter: &str, limit: u32) -> (String, &'static str) {
    let budget = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_mul(CHARS_PER_TOKEN);
    if letter.chars().count() <= budget {
        return (letter.to_owned(), "stop");
    }
    let mut kept = String::new();
    let mut used = 0;
    for word in letter::chunks(letter) {
        let chars = word.chars().count();
        if used + chars > budget {
            break;
        }
        kept.push_str(word);
        used += chars;
    }
    if kept.is_empty() {
        kept = letter.chars().take(budget).collect();
    }
    (kept, "length")
}

async fn models(State(state): State<StubState>) -> axum::Json<Value> {
    axum::Json(json!({
        "object": "list",
        "data": [{ "id": state.inner.model, "object": "model", "created": 0, "owned_by": "letterbox" }],
    }))
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    let message = format!("Invalid URL ({method} {})", uri.path());
    api_error(StatusCode::NOT_FOUND, &message, None)
}

/// An injected rate limit with its hint in the form asked for, counted from `now`.
fn rate_limited(api: Api, retry_after: RetryAfter, now: SystemTime) -> Response {
    let message = match retry_after {
        RetryAfter::Seconds(seconds) | RetryAfter::HttpDate(seconds) => {
            format!("Rate limit reached for requests. Please try again in {seconds}s.")
        }
        RetryAfter::Millis(millis) => {
            format!("Rate limit reached for requests. Please try again in {millis}ms.")
        }
        RetryAfter::None => "Rate limit reached for requests. Please try again later.".to_owned(),
    };
    let mut response = error_response(
        api,
        StatusCode::TOO_MANY_REQUESTS,
        &message,
        "rate_limit_exceeded",
        Some("rate_limit_exceeded"),
    );
    if let Some((name, value)) = retry_after_header(retry_after, now) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// A call over the rate limit: 429 at once, with the wait until the next call would be taken,
/// as OpenAI sends it: `retry-after-ms` exactly, `Retry-After` rounded up to whole seconds.
fn over_rate(api: Api, limit: RateLimit, wait: Duration) -> Response {
    let millis = u64::try_from(wait.as_millis().max(1)).unwrap_or(u64::MAX);
    let seconds = millis.div_ceil(1000);
    let message = format!(
        "Rate limit reached for requests (limit: {}/s). Please try again in {millis}ms.",
        limit.per_second
    );
    let mut response = error_response(
        api,
        StatusCode::TOO_MANY_REQUESTS,
        &message,
        "rate_limit_exceeded",
        Some("rate_limit_exceeded"),
    );
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    headers.insert(
        HeaderName::from_static("retry-after-ms"),
        HeaderValue::from(millis),
    );
    response
}

/// The header that carries `retry_after`, as of `now`.
fn retry_after_header(
    retry_after: RetryAfter,
    now: SystemTime,
) -> Option<(HeaderName, HeaderValue)> {
    match retry_after {
        RetryAfter::Seconds(seconds) => Some((header::RETRY_AFTER, HeaderValue::from(seconds))),
        RetryAfter::HttpDate(seconds) => {
            let date = httpdate::fmt_http_date(now + Duration::from_secs(u64::from(seconds)));
            HeaderValue::from_str(&date)
                .ok()
                .map(|value| (header::RETRY_AFTER, value))
        }
        RetryAfter::Millis(millis) => Some((
            HeaderName::from_static("retry-after-ms"),
            HeaderValue::from(millis),
        )),
        RetryAfter::None => None,
    }
}

/// An injected failure, worded and typed as the provider words it.
fn injected_error(api: Api, status: StatusCode) -> Response {
    let (message, kind, code) = match status.as_u16() {
        429 => (
            "Rate limit reached for requests. Please try again in 1s.",
            "rate_limit_exceeded",
            Some("rate_limit_exceeded"),
        ),
        500 => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        503 | 529 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
        ),
        400..=499 => (
            "The request was rejected by the stub's failure injection.",
            "invalid_request_error",
            None,
        ),
        _ => (
            "The stub's failure injection answered with a server error.",
            "server_error",
            None,
        ),
    };
    let mut response = error_response(api, status, message, kind, code);
    if matches!(status.as_u16(), 429 | 503 | 529) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn api_error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    error_response(Api::OpenAi, status, message, "invalid_request_error", code)
}

/// An error in the shape of `api`: OpenAI's `{"error": {"message", "type", "param", "code"}}`
/// with `kind` and `code`, or Anthropic's `{"type": "error", "error": {"type", "message"}}`,
/// whose type follows from the status.
fn error_response(
    api: Api,
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> Response {
    let body = match api {
        Api::OpenAi => {
            json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
        }
        Api::Anthropic => anthropic::error_body(anthropic::error_type(status), message),
    };
    (status, axum::Json(body)).into_response()
}

/// xorshift64*: plenty for latency jitter, and deterministic under a fixed seed in tests.
struct XorShift(u64);

impl XorShift {
    fn from_clock() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        // The low bits change fastest; zero is the one state xorshift never leaves.
        Self((nanos as u64 ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform on (0, 1]: never zero, so its logarithm is finite.
    fn unit(&mut self) -> f64 {
        1.0 - (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Box–Muller.
    fn standard_normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_keeps_only_the_last_thousand_requests() {
        let state = StubState::new(StubConfig::new("k"));
        for serial in 0..(RECORD_LIMIT + 5) {
            state.record(RecordedRequest {
                model: serial.to_string(),
                ..RecordedRequest::default()
            });
        }
        let kept = state.requests();
        assert_eq!(kept.len(), RECORD_LIMIT);
        assert_eq!(kept[0].model, "5");
        assert_eq!(state.request_count(), RECORD_LIMIT + 5);
    }

    #[test]
    fn failures_hit_the_first_call_and_every_nth_after_it() {
        let mut config = StubConfig::new("k");
        config.failure = Some(Failure::Status {
            status: 503,
            every: 3,
        });
        let state = StubState::new(config);
        let failed: Vec<bool> = (0..7).map(|_| state.injected_failure().is_some()).collect();
        assert_eq!(failed, [true, false, false, true, false, false, true]);
    }

    #[test]
    fn every_kind_of_failure_hits_the_first_call_and_every_nth_after_it() {
        let kinds = [
            Failure::RateLimited {
                every: 2,
                retry_after: RetryAfter::Seconds(1),
            },
            Failure::Hang { every: 2 },
            Failure::CutStream { every: 2 },
            Failure::ErrorEvent { every: 2 },
        ];
        for kind in kinds {
            let mut config = StubConfig::new("k");
            config.failure = Some(kind);
            let state = StubState::new(config);
            let injected: Vec<Option<Failure>> = (0..5).map(|_| state.injected_failure()).collect();
            assert_eq!(injected, [Some(kind), None, Some(kind), None, Some(kind)]);
        }
    }

    #[test]
    fn setting_a_failure_restarts_the_count_of_calls() {
        let state = StubState::new(StubConfig::new("k"));
        assert_eq!(state.injected_failure(), None);
        let hang = Failure::Hang { every: 3 };
        state.set_failure(Some(hang)).unwrap();
        let injected: Vec<Option<Failure>> = (0..4).map(|_| state.injected_failure()).collect();
        assert_eq!(injected, [Some(hang), None, None, Some(hang)]);
        assert!(
            state
                .set_failure(Some(Failure::CutStream { every: 0 }))
                .is_err()
        );
    }

    #[test]
    fn retry_after_takes_each_form_providers_send() {
        // RFC 9110's example date.
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let header = |retry_after| {
            retry_after_header(retry_after, now)
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        };
        assert_eq!(
            header(RetryAfter::Seconds(7)),
            Some(("retry-after".to_owned(), "7".to_owned()))
        );
        assert_eq!(
            header(RetryAfter::HttpDate(0)),
            Some((
                "retry-after".to_owned(),
                "Sun, 06 Nov 1994 08:49:37 GMT".to_owned()
            ))
        );
        assert_eq!(
            header(RetryAfter::HttpDate(90)),
            Some((
                "retry-after".to_owned(),
                "Sun, 06 Nov 1994 08:51:07 GMT".to_owned()
            ))
        );
        assert_eq!(
            header(RetryAfter::Millis(1500)),
            Some(("retry-after-ms".to_owned(), "1500".to_owned()))
        );
        assert_eq!(header(RetryAfter::None), None);
    }

    #[test]
    fn a_rate_limit_names_its_wait_in_the_message_and_in_one_header() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let response = rate_limited(Api::OpenAi, RetryAfter::Millis(250), now);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after-ms"], "250");
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let response = rate_limited(Api::OpenAi, RetryAfter::HttpDate(2), now);
        assert_eq!(
            response.headers()[header::RETRY_AFTER],
            "Sun, 06 Nov 1994 08:49:39 GMT"
        );
        assert!(response.headers().get("retry-after-ms").is_none());
    }

    #[test]
    fn a_call_over_the_rate_gets_the_exact_wait_and_whole_seconds() {
        let limit = RateLimit::per_second(std::num::NonZeroU32::new(20).unwrap());
        let response = over_rate(Api::OpenAi, limit, Duration::from_millis(1250));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after-ms"], "1250");
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        // A wait under a millisecond is still a wait.
        let response = over_rate(Api::OpenAi, limit, Duration::from_micros(300));
        assert_eq!(response.headers()["retry-after-ms"], "1");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn the_rate_limit_takes_a_burst_then_refuses() {
        let mut config = StubConfig::new("k");
        // One a second: within this test, nothing is earned back after the burst of three.
        config.rate_limit = Some(RateLimit {
            per_second: std::num::NonZeroU32::new(1).unwrap(),
            burst: std::num::NonZeroU32::new(3).unwrap(),
        });
        let state = StubState::new(config);
        let refused: Vec<bool> = (0..4).map(|_| state.over_rate().is_some()).collect();
        assert_eq!(refused, [false, false, false, true]);
        let (_, wait) = state.over_rate().unwrap();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(StubState::new(StubConfig::new("k")).over_rate().is_none());
    }

    #[test]
    fn a_broken_answer_keeps_the_first_chunks_and_always_misses_some() {
        let letter = "Dear Jane Roe,\n\nI am writing to apply for the role.";
        assert_eq!(cut_prefix(letter), "Dear Jane Roe,\n\nI am ");
        // A letter of three words keeps two.
        assert_eq!(cut_prefix("Dear Jane Roe"), "Dear Jane ");
        assert_eq!(cut_prefix("Hello"), "");
    }

    #[test]
    fn a_short_token_budget_cuts_at_a_word_and_reports_length() {
        let (kept, reason) = cut_to_tokens("Dear Hiring Manager, hello", 4);
        assert_eq!((kept.as_str(), reason), ("Dear Hiring ", "length"));
        let (kept, reason) = cut_to_tokens("Dear Jo", 100);
        assert_eq!((kept.as_str(), reason), ("Dear Jo", "stop"));
    }

    #[test]
    fn log_normal_samples_centre_on_the_median() {
        let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
        let latency = Latency::LogNormal {
            median: Duration::from_millis(100),
            sigma: 0.5,
        };
        let mut samples: Vec<Duration> = (0..2001)
            .map(|_| latency.with_normal(rng.standard_normal()))
            .collect();
        samples.sort_unstable();
        let median = samples[1000].as_millis();
        assert!((90..=110).contains(&median), "median {median} ms");
    }

    #[test]
    fn content_parts_are_read_as_text() {
        let parts = json!([{ "type": "text", "text": "one" }, { "type": "text", "text": "two" }]);
        assert_eq!(content_text(&parts), "one\ntwo");
        assert_eq!(content_text(&Value::Null), "");
    }
}
