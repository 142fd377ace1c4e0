//! The client for OpenAI-compatible chat-completions APIs (`POST {LLM_BASE_URL}/chat/completions`).
//!
//! Provider bodies never leave this module as text: error responses are reduced to the status
//! and the provider's short error code, because providers quote parts of the key in messages.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::prompt::Prompt;

/// The largest response body read from a provider; a letter is a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: String,
    model: String,
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
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
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
    pub fn new(base_url: &str, model: &str) -> Result<Self, reqwest::Error> {
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
        let body = json!({
            "model": self.model,
            "messages": [
                { "role": "system", "content": prompt.system },
                { "role": "user", "content": prompt.user },
            ],
            "max_tokens": max_tokens,
            "stream": false,
        });
        let exchange = async {
            let response = self
                .http
                .post(&self.endpoint)
                .bearer_auth(key.expose_secret())
                .json(&body)
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
            let retry_after = retry_after(response.headers());
            let bytes = read_capped(response).await?;
            if !status.is_success() {
                return Err(status_error(status, &bytes, retry_after));
            }
            parse_completion(&bytes)
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

/// `Retry-After` in seconds (an HTTP date counts as unknown), or `retry-after-ms`.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    text("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
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
fn provider_code(body: &[u8]) -> Option<String> {
    let envelope: ErrorEnvelope = serde_json::from_slice(body).ok()?;
    let candidate = match envelope.error.code {
        Some(serde_json::Value::String(code)) => Some(code),
        _ => envelope.error.kind,
    }?;
    let is_identifier = !candidate.is_empty()
        && candidate.len() <= 64
        && candidate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    is_identifier.then_some(candidate)
}

fn parse_completion(body: &[u8]) -> Result<(String, Option<String>), LlmError> {
    let response: ChatResponse = serde_json::from_slice(body)
        .map_err(|_| LlmError::InvalidResponse("not a chat completion"))?;
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
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
    }
}
