//! The client for OpenAI-compatible chat-completions APIs (`POST {LLM_BASE_URL}/chat/completions`).
//!
//! Provider bodies never leave this module as text: error responses are reduced to the status
//! and the provider's short error code, because providers quote parts of the key in messages.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::prompt::Prompt;

/// The largest response body read from a provider; a letter is a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
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
    #[error("the LLM provider failed ({0})")]
    ServerError(u16),
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
    /// Why another attempt may succeed, as a metric label; `None` when it cannot (a refused
    /// request, a filtered or truncated letter: the same request would meet the same answer).
    pub fn retry_reason(&self) -> Option<&'static str> {
        match self {
            Self::RateLimited { .. } => Some("rate_limited"),
            Self::ServerError(_) => Some("server_error"),
            Self::Timeout(_) => Some("timeout"),
            Self::Unreachable => Some("unreachable"),
            Self::Incomplete | Self::StreamError(_) => Some("stream_failed"),
            Self::InvalidResponse(_) => Some("invalid_response"),
            Self::Unauthorized(_)
            | Self::Rejected { .. }
            | Self::ContentFiltered
            | Self::Truncated
            | Self::Empty => None,
        }
    }

    /// The wait the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    /// What some providers send with a 200 when the answer failed after all.
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

/// A chat-completions request, borrowing the prompt.
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: [ChatMessage<'a>; 2],
    max_tokens: u32,
    stream: bool,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl LlmClient {
    pub fn new(base_url: &str, model: &str, stream: bool) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("letterbox/", env!("CARGO_PKG_VERSION")))
            // A redirect would re-send the key and the documents somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            endpoint: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            model: model.to_owned(),
            stream,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// One chat completion, bounded by `timeout` for the whole exchange.
    pub async fn complete(
        &self,
        key: &SecretString,
        prompt: &Prompt,
        max_tokens: u32,
        timeout: Duration,
    ) -> Result<Completion, LlmError> {
        let started = Instant::now();
        // Serialised straight from the prompt: no second copy of the documents is held while
        // the provider writes.
        let body = serde_json::to_vec(&ChatRequest {
            model: &self.model,
            messages: [
                ChatMessage {
                    role: "system",
                    content: &prompt.system,
                },
                ChatMessage {
                    role: "user",
                    content: &prompt.user,
                },
            ],
            max_tokens,
            // Either way an answer cut off mid-letter is told apart from a short letter: a
            // stream by its missing final event, a whole answer by its incomplete body.
            stream: self.stream,
        })
        .map_err(|_| LlmError::InvalidResponse("the request could not be encoded"))?;
        let exchange = async {
            let response = self
                .http
                .post(&self.endpoint)
                .bearer_auth(key.expose_secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map_err(|error| {
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
                read_stream(response).await
            } else {
                // One JSON body: asked for, or from a provider that ignores `stream`. A body cut
                // off after the 200 is an answer cut short, like a stream without its end.
                let body = read_capped(response).await.map_err(|error| match error {
                    LlmError::Unreachable => LlmError::Incomplete,
                    other => other,
                })?;
                parse_completion(&body)
            }
        };
        let (text, model) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| LlmError::Timeout(timeout.as_millis()))??;
        Ok(Completion {
            text,
            model: model.unwrap_or_else(|| self.model.clone()),
            elapsed: started.elapsed(),
        })
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

/// Reads a streamed completion (server-sent events). The letter counts only if the stream says
/// it is finished (a `finish_reason`, or `[DONE]`): a stream that stops short, or carries an
/// error event after its 200, is a failure, never a short letter.
async fn read_stream(
    mut response: reqwest::Response,
) -> Result<(String, Option<String>), LlmError> {
    let mut decoder = SseDecoder::default();
    let mut letter = StreamedLetter::default();
    let mut received = 0;
    'body: while let Some(chunk) = response.chunk().await.map_err(|_| LlmError::Incomplete)? {
        received += chunk.len();
        if received > MAX_RESPONSE_BYTES {
            return Err(LlmError::InvalidResponse("the body is too large"));
        }
        for data in decoder.push(&chunk) {
            if letter.event(&data)? {
                break 'body;
            }
        }
    }
    letter.finish()
}

/// Splits a byte stream into the `data` of server-sent events (lines `data: …`, events ended by
/// a blank line; comments and other fields ignored).
#[derive(Default)]
struct SseDecoder {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseDecoder {
    fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut events = Vec::new();
        for &byte in bytes {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.is_empty() {
                if self.has_data {
                    events.push(std::mem::take(&mut self.data));
                    self.has_data = false;
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data
                    .extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
                self.has_data = true;
            }
        }
        events
    }
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Default)]
struct StreamedLetter {
    text: String,
    model: Option<String>,
    finish_reason: Option<String>,
    done: bool,
}

impl StreamedLetter {
    /// Takes one event; true once the stream has said it is done.
    fn event(&mut self, data: &[u8]) -> Result<bool, LlmError> {
        if data == b"[DONE]" {
            self.done = true;
            return Ok(true);
        }
        let chunk: StreamChunk = serde_json::from_slice(data)
            .map_err(|_| LlmError::InvalidResponse("a stream event that is not JSON"))?;
        if let Some(error) = chunk.error {
            return Err(LlmError::StreamError(error_code(error)));
        }
        if self.model.is_none() {
            self.model = chunk.model;
        }
        if let Some(choice) = chunk.choices.into_iter().next() {
            if let Some(content) = choice.delta.and_then(|delta| delta.content) {
                self.text.push_str(&content);
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        Ok(false)
    }

    fn finish(self) -> Result<(String, Option<String>), LlmError> {
        match self.finish_reason.as_deref() {
            Some("content_filter") => return Err(LlmError::ContentFiltered),
            Some("length") => return Err(LlmError::Truncated),
            None if !self.done => return Err(LlmError::Incomplete),
            _ => {}
        }
        let text = clean_letter(&self.text);
        if text.is_empty() {
            return Err(LlmError::Empty);
        }
        Ok((text, self.model))
    }
}

fn is_identifier(candidate: &str) -> bool {
    !candidate.is_empty()
        && candidate.len() <= 64
        && candidate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn status_error(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> LlmError {
    let code = status.as_u16();
    match code {
        401 | 403 => LlmError::Unauthorized(code),
        429 => LlmError::RateLimited { retry_after },
        500..=599 => LlmError::ServerError(code),
        _ => LlmError::Rejected {
            status: code,
            code: provider_code(body),
        },
    }
}

/// The provider's machine-readable error code (`context_length_exceeded`), if it is a short
/// identifier; free text is never passed on.
/// The short code of an error object in an answer, when it is a plain identifier (never its
/// message, which may quote the request).
fn error_code(error: ErrorBody) -> Option<String> {
    let code = match error.code {
        Some(serde_json::Value::String(code)) => Some(code),
        _ => error.kind,
    };
    code.filter(|c| is_identifier(c))
}

fn provider_code(body: &[u8]) -> Option<String> {
    let envelope: ErrorEnvelope = serde_json::from_slice(body).ok()?;
    error_code(envelope.error)
}

fn parse_completion(body: &[u8]) -> Result<(String, Option<String>), LlmError> {
    let response: ChatResponse = serde_json::from_slice(body).map_err(|error| {
        if error.is_eof() {
            // The body stops inside the JSON: an answer cut short.
            LlmError::Incomplete
        } else {
            LlmError::InvalidResponse("not a chat completion")
        }
    })?;
    if let Some(error) = response.error {
        return Err(LlmError::StreamError(error_code(error)));
    }
    let choice = response
        .choices
        .into_iter()
        .next()
        .ok_or(LlmError::InvalidResponse("no choices"))?;
    match choice.finish_reason.as_deref() {
        Some("content_filter") => return Err(LlmError::ContentFiltered),
        Some("length") => return Err(LlmError::Truncated),
        _ => {}
    }
    let text = choice.message.and_then(|m| m.content).unwrap_or_default();
    let text = clean_letter(&text);
    if text.is_empty() {
        return Err(LlmError::Empty);
    }
    Ok((text, response.model))
}

/// The letter as a client can safely display it: no control characters but line breaks and
/// tabs (a terminal escape sequence or a NUL from a misbehaving model stops here), no
/// bidirectional overrides that could reorder what a reader sees.
fn clean_letter(text: &str) -> String {
    let unsafe_to_show = |c: &char| {
        (c.is_control() && *c != '\n' && *c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    text.trim().chars().filter(|c| !unsafe_to_show(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_yields_its_trimmed_text_and_model() {
        let body = br#"{"model":"m-1","choices":[{"message":{"role":"assistant","content":"  Dear team,\n"},"finish_reason":"stop"}]}"#;
        assert_eq!(
            parse_completion(body),
            Ok(("Dear team,".to_owned(), Some("m-1".to_owned())))
        );
    }

    #[test]
    fn control_characters_and_bidi_overrides_never_reach_the_client() {
        let body = "{\"choices\":[{\"message\":{\"content\":\"Dear\\u0000 team,\\u001b[2J\\n\\tthanks\\u202e!\"},\"finish_reason\":\"stop\"}]}";
        assert_eq!(
            parse_completion(body.as_bytes()),
            Ok(("Dear team,[2J\n\tthanks!".to_owned(), None))
        );
    }

    #[test]
    fn a_whole_answer_that_is_an_error_object_is_a_failure() {
        let body = br#"{"error": {"message": "Sorry about that!", "type": "server_error", "param": null, "code": "internal_error"}}"#;
        assert!(matches!(
            parse_completion(body),
            Err(LlmError::StreamError(Some(code))) if code == "internal_error"
        ));
        // A code that is not a plain identifier is not repeated.
        let body =
            br#"{"error": {"message": "x", "type": "server_error", "code": "key sk-123 is bad"}}"#;
        assert!(matches!(
            parse_completion(body),
            Err(LlmError::StreamError(None))
        ));
    }

    #[test]
    fn unusable_completions_are_errors() {
        let filtered =
            br#"{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}"#;
        assert_eq!(parse_completion(filtered), Err(LlmError::ContentFiltered));
        let cut = br#"{"choices":[{"message":{"content":"Dear"},"finish_reason":"length"}]}"#;
        assert_eq!(parse_completion(cut), Err(LlmError::Truncated));
        let empty = br#"{"choices":[{"message":{"content":""},"finish_reason":""}]}"#;
        assert_eq!(parse_completion(empty), Err(LlmError::Empty));
        assert_eq!(
            parse_completion(b"<html>"),
            Err(LlmError::InvalidResponse("not a chat completion"))
        );
        assert_eq!(
            parse_completion(br#"{"choices":[]}"#),
            Err(LlmError::InvalidResponse("no choices"))
        );
        assert_eq!(
            parse_completion(br#"{"choices":[{"message":{"content":"Dear Ms"#),
            Err(LlmError::Incomplete)
        );
    }

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
            LlmError::ServerError(502)
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

    fn stream(body: &str) -> Result<(String, Option<String>), LlmError> {
        let mut decoder = SseDecoder::default();
        let mut letter = StreamedLetter::default();
        // Fed in awkward pieces, as a network delivers them.
        for piece in body.as_bytes().chunks(7) {
            for data in decoder.push(piece) {
                if letter.event(&data)? {
                    return letter.finish();
                }
            }
        }
        letter.finish()
    }

    const CHUNK: &str = "data: {\"model\":\"m-2\",\"choices\":[{\"delta\":{\"content\":\"Dear \"}}]}\n\n: keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"team,\"}}]}\r\n\r\n";

    #[test]
    fn a_stream_counts_only_when_it_says_it_is_finished() {
        let finished = format!(
            "{CHUNK}data: {{\"choices\":[{{\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(
            stream(&finished),
            Ok(("Dear team,".to_owned(), Some("m-2".to_owned())))
        );
        // Cut before its final event: a failure, not a short letter.
        assert_eq!(stream(CHUNK), Err(LlmError::Incomplete));
        // An error event after the 200.
        let errored = format!(
            "{CHUNK}data: {{\"error\":{{\"message\":\"overloaded sk-abc\",\"type\":\"server_error\",\"code\":\"internal_error\"}}}}\n\n"
        );
        assert_eq!(
            stream(&errored),
            Err(LlmError::StreamError(Some("internal_error".into())))
        );
        let cut = format!(
            "{CHUNK}data: {{\"choices\":[{{\"delta\":{{}},\"finish_reason\":\"length\"}}]}}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(stream(&cut), Err(LlmError::Truncated));
        assert_eq!(
            stream("data: {not json\n\n"),
            Err(LlmError::InvalidResponse("a stream event that is not JSON"))
        );
        assert_eq!(stream("data: [DONE]\n\n"), Err(LlmError::Empty));
    }

    #[test]
    fn only_passing_failures_are_retried() {
        assert_eq!(
            LlmError::RateLimited { retry_after: None }.retry_reason(),
            Some("rate_limited")
        );
        assert_eq!(
            LlmError::ServerError(503).retry_reason(),
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
}
