//! Anthropic's Messages API in the stub: the request it takes and the shapes it answers in.
//!
//! A request carries the key in `x-api-key` and the API version in `anthropic-version`; the
//! system prompt is a top-level `system` (a string or text blocks), never a message, and
//! `max_tokens` is required. A whole answer is a `message` whose `content` holds one text block;
//! a stream sends `message_start`, `content_block_start`, a `ping`, one `content_block_delta`
//! per word, `content_block_stop`, `message_delta` (with the stop reason) and `message_stop`,
//! each as a named event whose data repeats its type. Errors are `{"type": "error", "error":
//! {"type", "message"}}`, typed by status (`rate_limit_error` for 429, `overloaded_error` for
//! 529, …).

use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::server::{Answer, Call, Message, StreamEvent, content_text};

pub(super) const KEY_HEADER: &str = "x-api-key";
pub(super) const VERSION_HEADER: &str = "anthropic-version";

/// Events a stream sends before the first word: `message_start`, `content_block_start`, `ping`.
pub(super) const OPENING_EVENTS: usize = 3;

#[derive(Deserialize)]
pub(super) struct MessagesRequest {
    pub(super) model: String,
    #[serde(default)]
    pub(super) max_tokens: Option<u32>,
    /// A string or an array of text blocks.
    #[serde(default)]
    system: Value,
    messages: Vec<Message>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    pub(super) stream: Option<bool>,
}

impl MessagesRequest {
    pub(super) fn system(&self) -> String {
        content_text(&self.system)
    }

    pub(super) fn user(&self) -> String {
        let parts: Vec<String> = self
            .messages
            .iter()
            .filter(|message| message.role == "user")
            .map(|message| content_text(&message.content))
            .collect();
        parts.join("\n\n")
    }

    /// The checks Anthropic makes on a well-formed body.
    pub(super) fn invalid(&self) -> Option<&'static str> {
        if self.messages.is_empty() {
            return Some("messages: at least one message is required");
        }
        if self.messages.iter().any(|message| message.role == "system") {
            return Some(
                "messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role.",
            );
        }
        match self.max_tokens {
            None => return Some("max_tokens: Field required"),
            Some(0) => return Some("max_tokens: Input should be greater than or equal to 1"),
            Some(_) => {}
        }
        if self.temperature.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return Some("temperature: Input should be less than or equal to 1");
        }
        None
    }

    pub(super) fn call(&self) -> Call {
        let system = self.system();
        let user = self.user();
        let prompt_chars = system.chars().count() + user.chars().count();
        Call {
            system,
            user,
            stream: self.stream.unwrap_or(false),
            max_tokens: self.max_tokens,
            prompt_chars,
            include_usage: false,
        }
    }
}

/// The error type Anthropic gives a status.
pub(super) fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

pub(super) fn error_body(kind: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

/// Anthropic's name for how the letter ended.
fn stop_reason(answer: &Answer) -> &'static str {
    match answer.finish_reason {
        "length" => "max_tokens",
        _ => "end_turn",
    }
}

/// A whole answer whose text is `content`.
pub(super) fn message(answer: &Answer, content: &str) -> Value {
    json!({
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [{ "type": "text", "text": content }],
        "stop_reason": stop_reason(answer),
        "stop_sequence": null,
        "usage": {
            "input_tokens": answer.prompt_tokens,
            "output_tokens": answer.completion_tokens(),
        },
    })
}

fn event(name: &'static str, data: Value) -> StreamEvent {
    (Some(name), data.to_string())
}

/// Every event of a streamed answer with the time it is due.
pub(super) fn plan(answer: &Answer, latency: Duration) -> Vec<(Duration, StreamEvent)> {
    let words = answer.word_times(latency);
    let mut plan = Vec::with_capacity(words.len() + OPENING_EVENTS + 3);
    let started = json!({
        "type": "message_start",
        "message": {
            "id": answer.id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": answer.model,
            "stop_reason": null,
            "stop_sequence": null,
            "usage": { "input_tokens": answer.prompt_tokens, "output_tokens": 1 },
        },
    });
    plan.push((Duration::ZERO, event("message_start", started)));
    let block = json!({
        "type": "content_block_start",
        "index": 0,
        "content_block": { "type": "text", "text": "" },
    });
    plan.push((Duration::ZERO, event("content_block_start", block)));
    plan.push((Duration::ZERO, event("ping", json!({ "type": "ping" }))));
    for (due, word) in words {
        let delta = json!({
            "type": "content_block_delta",
            "index": 0,
            "delta": { "type": "text_delta", "text": word },
        });
        plan.push((due, event("content_block_delta", delta)));
    }
    let stop = json!({ "type": "content_block_stop", "index": 0 });
    plan.push((latency, event("content_block_stop", stop)));
    let delta = json!({
        "type": "message_delta",
        "delta": { "stop_reason": stop_reason(answer), "stop_sequence": null },
        "usage": { "output_tokens": answer.completion_tokens() },
    });
    plan.push((latency, event("message_delta", delta)));
    plan.push((
        latency,
        event("message_stop", json!({ "type": "message_stop" })),
    ));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_typed_by_status() {
        let types: Vec<&str> = [400, 401, 403, 404, 429, 500, 503, 529]
            .into_iter()
            .map(|status| error_type(StatusCode::from_u16(status).unwrap()))
            .collect();
        assert_eq!(
            types,
            [
                "invalid_request_error",
                "authentication_error",
                "permission_error",
                "not_found_error",
                "rate_limit_error",
                "api_error",
                "api_error",
                "overloaded_error"
            ]
        );
    }

    #[test]
    fn the_system_prompt_is_a_string_or_text_blocks_and_never_a_message() {
        let request: MessagesRequest = serde_json::from_value(json!({
            "model": "m",
            "max_tokens": 10,
            "system": [{ "type": "text", "text": "one" }, { "type": "text", "text": "two" }],
            "messages": [{ "role": "user", "content": "hi" }],
        }))
        .unwrap();
        assert_eq!(request.system(), "one\ntwo");
        assert_eq!(request.user(), "hi");
        assert_eq!(request.invalid(), None);
        let with_system_role: MessagesRequest = serde_json::from_value(json!({
            "model": "m",
            "max_tokens": 10,
            "messages": [{ "role": "system", "content": "x" }, { "role": "user", "content": "hi" }],
        }))
        .unwrap();
        assert!(
            with_system_role
                .invalid()
                .unwrap()
                .contains("Unexpected role")
        );
        let without_limit: MessagesRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [{ "role": "user", "content": "hi" }],
        }))
        .unwrap();
        assert_eq!(without_limit.invalid(), Some("max_tokens: Field required"));
    }
}
