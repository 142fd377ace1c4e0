//! The LLM client: one request per call, to an OpenAI-compatible chat-completions API
//! (`POST {LLM_BASE_URL}/chat/completions`, [`openai`]) or to Anthropic's Messages API
//! (`POST {LLM_BASE_URL}/messages`, [`anthropic`]).
//!
//! What the two share lives here: sending, the time limit, reading a body under a size cap,
//! classifying an error status for the retry loop, `Retry-After`, and the checks a letter passes
//! before a client sees it. Each provider's module only knows its wire format. Whichever answers,
//! the worker sees the same [`Completion`] or [`LlmError`].
//!
//! Provider bodies never leave this module as text: error responses are reduced to the status
//! and the provider's short error code, because providers quote parts of the key in messages.

mod anthropic;
mod openai;
mod sse;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::prompt::Prompt;

/// The largest response body read from a provider; a letter is a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;

/// The wire format a provider speaks (`LLM_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LlmProvider {
    /// OpenAI's chat completions, which most providers and gateways also speak.
    #[value(name = "openai")]
    OpenAi,
    /// Anthropic's Messages API.
    #[value(name = "anthropic")]
    Anthropic,
}

impl LlmProvider {
    /// The base URL used when `LLM_BASE_URL` names none.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::OpenAi => "https://api.openai.com/v1",
            Self::Anthropic => "https://api.anthropic.com/v1",
        }
    }

    /// The name `LLM_PROVIDER` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::OpenAi => "/chat/completions",
            Self::Anthropic => "/messages",
        }
    }
}

#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    provider: LlmProvider,
    endpoint: String,
    model: String,
    /// Ask for a streamed answer (`LETTERBOX_LLM_STREAM`).
    stream: bool,
}

/// A finished completion.
pub struct Completion {
    pub text: String,
    pub model: String,
    pub elapsed: Duration,
}

/// A letter's text and the model the provider says wrote it.
type Answer = (String, Option<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LlmError {
    #[error("the LLM provider did not answer within {0} ms")]
    Timeout(u128),
    #[error("the LLM provider rejected Letterbox's API key ({0})")]
    Unauthorized(u16),
    #[error("the LLM provider is rate-limiting Letterbox (429)")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the LLM provider refused the request ({status}{})", code.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
    Rejected { status: u16, code: Option<String> },
    /// A 5xx, Anthropic's 529 (overloaded) included.
    #[error("the LLM provider failed ({status})")]
    ServerError {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("the LLM provider could not be reached")]
    Unreachable,
    #[error("the LLM provider's answer could not be read ({0})")]
    InvalidResponse(&'static str),
    #[error("the LLM provider withheld the letter (content filter)")]
    ContentFiltered,
    #[error("the LLM provider stopped before the letter was finished (token limit)")]
    Truncated,
    #[error("the LLM provider returned an empty letter")]
    Empty,
    #[error("the LLM provider's answer ended before the letter was finished")]
    Incomplete,
    #[error("the LLM provider reported an error in the middle of its answer{}", .0.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    StreamError(Option<String>),
}

impl LlmError {
    /// What went wrong, as a metric label from a fixed set.
    pub fn label(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::ServerError { .. } => "server_error",
            Self::Timeout(_) => "timeout",
            Self::Unreachable => "unreachable",
            Self::Incomplete | Self::StreamError(_) => "stream_failed",
            Self::InvalidResponse(_) => "invalid_response",
            Self::Unauthorized(_) => "unauthorized",
            Self::Rejected { .. } => "rejected",
            Self::ContentFiltered => "content_filtered",
            Self::Truncated => "truncated",
            Self::Empty => "empty",
        }
    }

    /// Why another attempt may succeed, as a metric label; `None` when it cannot (a refused
    /// request, a filtered or truncated letter: the same request would meet the same answer).
    pub fn retry_reason(&self) -> Option<&'static str> {
        match self {
            Self::RateLimited { .. }
            | Self::ServerError { .. }
            | Self::Timeout(_)
            | Self::Unreachable
            | Self::Incomplete
            | Self::StreamError(_)
            | Self::InvalidResponse(_) => Some(self.label()),
            Self::Unauthorized(_)
            | Self::Rejected { .. }
            | Self::ContentFiltered
            | Self::Truncated
            | Self::Empty => None,
        }
    }

    /// Why a second provider may succeed where this one failed for good: a passing failure
    /// that outlasted every attempt, or a key the provider refuses. `None` when the request
    /// itself is at fault, which another provider would refuse too.
    pub fn fallback_reason(&self) -> Option<&'static str> {
        match self {
            Self::Unauthorized(_) => Some(self.label()),
            other => other.retry_reason(),
        }
    }

    /// The wait the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::ServerError { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// An error object, as both providers send it: OpenAI's `{"message", "type", "code"}`,
/// Anthropic's `{"type", "message"}`. Only the short identifiers are read, never the message.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// `{"error": {…}}`: OpenAI's error body, and Anthropic's (which adds `"type": "error"`).
#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

/// One message of a request, borrowing the prompt.
#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl LlmClient {
    pub fn new(
        provider: LlmProvider,
        base_url: &str,
        model: &str,
        stream: bool,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("letterbox/", env!("CARGO_PKG_VERSION")))
            // A redirect would re-send the key and the documents somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            provider,
            endpoint: format!("{}{}", base_url.trim_end_matches('/'), provider.path()),
            model: model.to_owned(),
            stream,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn provider(&self) -> LlmProvider {
        self.provider
    }

    /// One completion, bounded by `timeout` for the whole exchange. With `pieces` the answer
    /// is streamed, whatever `LETTERBOX_LLM_STREAM` says, and its text handed on as it comes.
    pub async fn complete(
        &self,
        key: &SecretString,
        prompt: &Prompt,
        max_tokens: u32,
        timeout: Duration,
        pieces: Option<&Pieces>,
    ) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let stream = self.stream || pieces.is_some();
        // Serialised straight from the prompt: no second copy of the documents is held while
        // the provider writes. Either way an answer cut off mid-letter is told apart from a
        // short letter: a stream by its missing final event, a whole answer by its incomplete
        // body.
        let body = match self.provider {
            LlmProvider::OpenAi => openai::request(&self.model, prompt, max_tokens, stream),
            LlmProvider::Anthropic => anthropic::request(&self.model, prompt, max_tokens, stream),
        }
        .map_err(|_| LlmError::InvalidResponse("the request could not be encoded"))?;
        let request = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let request = match self.provider {
            LlmProvider::OpenAi => openai::authorize(request, key),
            LlmProvider::Anthropic => anthropic::authorize(request, key),
        };
        let exchange = async {
            let response = request.send().await.map_err(|error| {
                if error.is_timeout() {
                    LlmError::Timeout(timeout.as_millis())
                } else {
                    LlmError::Unreachable
                }
            })?;
            let status = response.status();
            let retry_after = retry_after(response.headers(), std::time::SystemTime::now());
            if !status.is_success() {
                let bytes = read_capped(response).await?;
                return Err(status_error(status, &bytes, retry_after));
            }
            let streamed = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("text/event-stream"));
            if streamed {
                match self.provider {
                    LlmProvider::OpenAi => {
                        sse::read_stream(response, openai::StreamedLetter::default(), pieces).await
                    }
                    LlmProvider::Anthropic => {
                        sse::read_stream(response, anthropic::StreamedMessage::default(), pieces)
                            .await
                    }
                }
            } else {
                // One JSON body: asked for, or from a provider that ignores `stream`. A body cut
                // off after the 200 is an answer cut short, like a stream without its end.
                let body = read_capped(response).await.map_err(|error| match error {
                    LlmError::Unreachable => LlmError::Incomplete,
                    other => other,
                })?;
                match self.provider {
                    LlmProvider::OpenAi => openai::parse(&body),
                    LlmProvider::Anthropic => anthropic::parse(&body),
                }
            }
        };
        let (text, model) = match pieces {
            None => tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| LlmError::Timeout(timeout.as_millis()))??,
            Some(pieces) => {
                // The attempt's share until the first piece; after it, the job's whole time.
                let expiry = tokio::time::sleep(timeout);
                tokio::pin!(expiry, exchange);
                loop {
                    tokio::select! {
                        result = &mut exchange => break result?,
                        () = &mut expiry => {
                            if pieces.any_sent() && tokio::time::Instant::now() < pieces.until {
                                expiry.as_mut().reset(pieces.until);
                            } else {
                                return Err(LlmError::Timeout(started.elapsed().as_millis()));
                            }
                        }
                    }
                }
            }
        };
        Ok(Completion {
            text,
            model: model.unwrap_or_else(|| self.model.clone()),
            elapsed: started.elapsed(),
        })
    }
}

/// Where the pieces of a streamed letter go as the provider writes them, cleaned as the letter
/// is; remembers whether any went.
pub struct Pieces {
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    sent: std::sync::atomic::AtomicBool,
    /// The end of the job's time: once pieces went out no retry can follow, so the attempt may
    /// run until then rather than stop at its share.
    until: tokio::time::Instant,
}

impl Pieces {
    pub fn new(
        until: tokio::time::Instant,
    ) -> (Self, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Self {
                tx,
                sent: std::sync::atomic::AtomicBool::new(false),
                until,
            },
            rx,
        )
    }

    fn send(&self, text: &str) {
        let clean: String = text.chars().filter(|c| !unsafe_to_show(*c)).collect();
        if clean.is_empty() {
            return;
        }
        self.sent.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(clean);
    }

    /// Whether any piece went out: a failure after that cannot be retried unseen.
    pub fn any_sent(&self) -> bool {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, LlmError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| LlmError::Unreachable)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(LlmError::InvalidResponse("the body is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The wait a provider asks for: `retry-after-ms` (OpenAI's), else `Retry-After` in seconds or
/// as an HTTP date (counted from `now`). Capped at an hour; nonsense counts as unknown.
fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: std::time::SystemTime,
) -> Option<Duration> {
    const MOST: f64 = 3600.0;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let seconds =
        |s: f64| (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(MOST)));
    if let Some(wait) = text("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
    {
        return Some(wait);
    }
    let value = text("retry-after")?;
    if let Ok(s) = value.parse::<f64>() {
        return seconds(s);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs_f64(MOST)),
    )
}

/// How an answer said it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The provider finished the letter.
    Finished,
    /// It withheld the letter (OpenAI's `content_filter`, Anthropic's `refusal`).
    Filtered,
    /// It hit the token limit (`length`, `max_tokens`).
    Truncated,
    /// It never said it was done: a stream that stopped short.
    Unfinished,
}

/// The letter a provider's answer holds, once it has said how it ended.
fn letter(text: &str, model: Option<String>, ending: Ending) -> Result<Answer, LlmError> {
    match ending {
        Ending::Filtered => return Err(LlmError::ContentFiltered),
        Ending::Truncated => return Err(LlmError::Truncated),
        Ending::Unfinished => return Err(LlmError::Incomplete),
        Ending::Finished => {}
    }
    let text = clean_letter(text);
    if text.is_empty() {
        return Err(LlmError::Empty);
    }
    Ok((text, model))
}

fn is_identifier(candidate: &str) -> bool {
    !candidate.is_empty()
        && candidate.len() <= 64
        && candidate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// An error status, classified for the retry loop; both providers' error bodies have the same
/// envelope. Anthropic's 529 (overloaded) is a 5xx like any other.
fn status_error(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> LlmError {
    let code = status.as_u16();
    match code {
        401 | 403 => LlmError::Unauthorized(code),
        429 => LlmError::RateLimited { retry_after },
        500..=599 => LlmError::ServerError {
            status: code,
            retry_after,
        },
        _ => LlmError::Rejected {
            status: code,
            code: provider_code(body),
        },
    }
}

/// The short code of an error object in an answer, when it is a plain identifier (never its
/// message, which may quote the request).
fn error_code(error: ErrorBody) -> Option<String> {
    let code = match error.code {
        Some(serde_json::Value::String(code)) => Some(code),
        _ => error.kind,
    };
    code.filter(|c| is_identifier(c))
}

/// The provider's machine-readable error code (`context_length_exceeded`,
/// `invalid_request_error`), if it is a short identifier; free text is never passed on.
fn provider_code(body: &[u8]) -> Option<String> {
    let envelope: ErrorEnvelope = serde_json::from_slice(body).ok()?;
    error_code(envelope.error)
}

/// A whole answer that is not the expected JSON: cut off inside it (an answer cut short), or
/// something else.
fn unreadable(error: &serde_json::Error, what: &'static str) -> LlmError {
    if error.is_eof() {
        LlmError::Incomplete
    } else {
        LlmError::InvalidResponse(what)
    }
}

/// The letter as a client can safely display it: no control characters but line breaks and
/// tabs (a terminal escape sequence or a NUL from a misbehaving model stops here), no
/// bidirectional overrides that could reorder what a reader sees.
fn clean_letter(text: &str) -> String {
    text.trim()
        .chars()
        .filter(|c| !unsafe_to_show(*c))
        .collect()
}

/// Control characters (but newlines and tabs) and bidirectional overrides never reach a client.
fn unsafe_to_show(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_keep_only_short_codes() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, body, None),
            LlmError::Rejected {
                status: 400,
                code: Some("context_length_exceeded".into())
            }
        );
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, b"plain text, not json", None),
            LlmError::Rejected {
                status: 400,
                code: None
            }
        );
        let free_text = br#"{"error":{"code":"you sent sk-secret here"}}"#;
        assert_eq!(provider_code(free_text), None);
        assert_eq!(
            status_error(StatusCode::UNAUTHORIZED, body, None),
            LlmError::Unauthorized(401)
        );
        assert_eq!(
            status_error(StatusCode::BAD_GATEWAY, b"", None),
            LlmError::ServerError {
                status: 502,
                retry_after: None
            }
        );
    }

    #[test]
    fn anthropic_error_statuses_map_like_openai_ones() {
        let error = |kind: &str| {
            format!(
                r#"{{"type":"error","error":{{"type":"{kind}","message":"Your key sk-ant-123 was used for: Dear team"}}}}"#
            )
        };
        let wait = Some(Duration::from_secs(3));
        let overloaded = StatusCode::from_u16(529).unwrap();
        assert_eq!(
            status_error(overloaded, error("overloaded_error").as_bytes(), wait),
            LlmError::ServerError {
                status: 529,
                retry_after: wait
            }
        );
        assert_eq!(
            status_error(
                StatusCode::TOO_MANY_REQUESTS,
                error("rate_limit_error").as_bytes(),
                wait
            ),
            LlmError::RateLimited { retry_after: wait }
        );
        assert_eq!(
            status_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                error("api_error").as_bytes(),
                None
            ),
            LlmError::ServerError {
                status: 500,
                retry_after: None
            }
        );
        assert_eq!(
            status_error(
                StatusCode::UNAUTHORIZED,
                error("authentication_error").as_bytes(),
                None
            ),
            LlmError::Unauthorized(401)
        );
        assert_eq!(
            status_error(
                StatusCode::FORBIDDEN,
                error("permission_error").as_bytes(),
                None
            ),
            LlmError::Unauthorized(403)
        );
        // The type is the short code; the message, which quotes the key, is dropped.
        let rejected = status_error(
            StatusCode::BAD_REQUEST,
            error("invalid_request_error").as_bytes(),
            None,
        );
        assert_eq!(
            rejected,
            LlmError::Rejected {
                status: 400,
                code: Some("invalid_request_error".into())
            }
        );
        assert_eq!(
            rejected.to_string(),
            "the LLM provider refused the request (400: invalid_request_error)"
        );
        assert_eq!(
            LlmError::ServerError {
                status: 529,
                retry_after: wait
            }
            .retry_after(),
            wait
        );
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_milliseconds() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(2)));
        let in_seven = httpdate::fmt_http_date(now + Duration::from_secs(7));
        headers.insert("retry-after", in_seven.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        headers.insert("retry-after", past.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
        headers.insert("retry-after", "-3".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
        headers.insert("retry-after", "99999999".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3600)));
        headers.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(
            retry_after(&headers, now),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn only_passing_failures_are_retried() {
        assert_eq!(
            LlmError::RateLimited { retry_after: None }.retry_reason(),
            Some("rate_limited")
        );
        assert_eq!(
            LlmError::ServerError {
                status: 503,
                retry_after: None
            }
            .retry_reason(),
            Some("server_error")
        );
        assert_eq!(LlmError::Incomplete.retry_reason(), Some("stream_failed"));
        assert_eq!(LlmError::Timeout(10).retry_reason(), Some("timeout"));
        assert_eq!(LlmError::Unauthorized(401).retry_reason(), None);
        assert_eq!(
            LlmError::Rejected {
                status: 400,
                code: None
            }
            .retry_reason(),
            None
        );
        assert_eq!(LlmError::Truncated.retry_reason(), None);
    }

    #[test]
    fn a_fallback_follows_passing_failures_and_refused_keys_only() {
        assert_eq!(
            LlmError::Unauthorized(403).fallback_reason(),
            Some("unauthorized")
        );
        assert_eq!(LlmError::Unreachable.fallback_reason(), Some("unreachable"));
        assert_eq!(
            LlmError::StreamError(None).fallback_reason(),
            Some("stream_failed")
        );
        assert_eq!(
            LlmError::InvalidResponse("x").fallback_reason(),
            Some("invalid_response")
        );
        // The request itself is at fault: another provider would refuse it too.
        assert_eq!(
            LlmError::Rejected {
                status: 400,
                code: None
            }
            .fallback_reason(),
            None
        );
        assert_eq!(LlmError::ContentFiltered.fallback_reason(), None);
        assert_eq!(LlmError::Empty.fallback_reason(), None);
    }

    #[test]
    fn each_provider_has_its_endpoint() {
        letterbox::install_crypto_provider();
        let openai = LlmClient::new(LlmProvider::OpenAi, "http://x/v1/", "m", false).unwrap();
        assert_eq!(openai.endpoint, "http://x/v1/chat/completions");
        let anthropic = LlmClient::new(
            LlmProvider::Anthropic,
            LlmProvider::Anthropic.default_base_url(),
            "m",
            true,
        )
        .unwrap();
        assert_eq!(anthropic.endpoint, "https://api.anthropic.com/v1/messages");
    }
}
