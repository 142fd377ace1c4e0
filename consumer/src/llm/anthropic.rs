//! Anthropic's Messages API (`POST {LLM_BASE_URL}/messages`, base URL
//! `https://api.anthropic.com/v1`): the request, the whole answer and the streamed one.
//!
//! The key goes in `x-api-key`, with the API version Letterbox speaks in `anthropic-version`.
//! The system prompt is a top-level field, not a message. An answer's text is the `text` of its
//! text blocks; `stop_reason` says how it ended (`max_tokens`: cut at the limit; `refusal`:
//! withheld). A stream is named events whose data repeat their type: `message_start`, then per
//! block `content_block_start`, `content_block_delta` (`text_delta`) and `content_block_stop`,
//! then `message_delta` (with the stop reason) and `message_stop`; `ping` may come at any time,
//! and an `error` event after the 200 reports a failure (`overloaded_error`, say). Types this
//! module does not know are skipped, as Anthropic asks of clients.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::sse::StreamReader;
use super::{Answer, Ending, ErrorBody, LlmError, WireMessage, error_code, letter, unreadable};
use crate::prompt::Prompt;

/// The version of the Messages API these shapes are from.
pub(super) const API_VERSION: &str = "2023-06-01";

/// A Messages request, borrowing the prompt.
#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    system: &'a str,
    messages: [WireMessage<'a>; 1],
    stream: bool,
}

pub(super) fn request(
    model: &str,
    prompt: &Prompt,
    max_tokens: u32,
    stream: bool,
) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&MessagesRequest {
        model,
        max_tokens,
        system: &prompt.system,
        messages: [WireMessage {
            role: "user",
            content: &prompt.user,
        }],
        stream,
    })
}

pub(super) fn authorize(
    request: reqwest::RequestBuilder,
    key: &SecretString,
) -> reqwest::RequestBuilder {
    let mut key = reqwest::header::HeaderValue::from_str(key.expose_secret())
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
    // Kept out of any debug output of the request.
    key.set_sensitive(true);
    request
        .header("x-api-key", key)
        .header("anthropic-version", API_VERSION)
}

/// A whole answer: `{"type": "message", "model", "content": [{"type": "text", "text"}, …],
/// "stop_reason", "usage"}`, or `{"type": "error", "error": {…}}`.
#[derive(Deserialize)]
struct MessageResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Option<Vec<ContentBlock>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

impl ContentBlock {
    /// The text of a text block; other blocks (thinking, tool use) are not the letter.
    fn text(&self) -> Option<&str> {
        (self.kind.as_deref() == Some("text"))
            .then_some(self.text.as_deref())
            .flatten()
    }
}

fn ending(stop_reason: Option<&str>) -> Ending {
    match stop_reason {
        Some("refusal") => Ending::Filtered,
        Some("max_tokens") => Ending::Truncated,
        _ => Ending::Finished,
    }
}

/// A whole answer.
pub(super) fn parse(body: &[u8]) -> Result<Answer, LlmError> {
    let response: MessageResponse =
        serde_json::from_slice(body).map_err(|e| unreadable(&e, "not a message"))?;
    if let Some(error) = response.error {
        return Err(LlmError::StreamError(error_code(error)));
    }
    let blocks = response
        .content
        .ok_or(LlmError::InvalidResponse("not a message"))?;
    let text: String = blocks.iter().filter_map(ContentBlock::text).collect();
    letter(
        &text,
        response.model,
        ending(response.stop_reason.as_deref()),
    )
}

/// One event's data; each type fills some of these.
#[derive(Deserialize)]
struct StreamEvent {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// `message_start`: the message so far, with its model.
    #[serde(default)]
    message: Option<StartedMessage>,
    /// `content_block_start`.
    #[serde(default)]
    content_block: Option<ContentBlock>,
    /// `content_block_delta` (`{"type": "text_delta", "text"}`) and `message_delta`
    /// (`{"stop_reason"}`).
    #[serde(default)]
    delta: Option<Delta>,
    /// `error`.
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct StartedMessage {
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

/// A streamed answer, finished by `message_stop` (or a `message_delta` naming the stop reason).
#[derive(Default)]
pub(super) struct StreamedMessage {
    text: String,
    model: Option<String>,
    stop_reason: Option<String>,
    done: bool,
}

impl StreamReader for StreamedMessage {
    fn text(&self) -> &str {
        &self.text
    }

    fn event(&mut self, data: &[u8]) -> Result<bool, LlmError> {
        let event: StreamEvent = serde_json::from_slice(data)
            .map_err(|_| LlmError::InvalidResponse("a stream event that is not JSON"))?;
        let kind = event
            .kind
            .ok_or(LlmError::InvalidResponse("a stream event without a type"))?;
        match kind.as_str() {
            "message_start" => {
                if let Some(model) = event.message.and_then(|message| message.model) {
                    self.model = Some(model);
                }
            }
            "content_block_start" => {
                if let Some(text) = event.content_block.as_ref().and_then(ContentBlock::text) {
                    self.text.push_str(text);
                }
            }
            "content_block_delta" => {
                if let Some(delta) = event.delta
                    && delta.kind.as_deref() == Some("text_delta")
                    && let Some(text) = delta.text
                {
                    self.text.push_str(&text);
                }
            }
            "message_delta" => {
                if let Some(reason) = event
                    .delta
                    .and_then(|delta| delta.stop_reason)
                    .filter(|reason| !reason.is_empty())
                {
                    self.stop_reason = Some(reason);
                }
            }
            "message_stop" => {
                self.done = true;
                return Ok(true);
            }
            "error" => return Err(LlmError::StreamError(event.error.and_then(error_code))),
            // `ping`, `content_block_stop`, and types added after this was written.
            _ => {}
        }
        Ok(false)
    }

    fn finish(self) -> Result<Answer, LlmError> {
        let ending = match self.stop_reason.as_deref() {
            None if !self.done => Ending::Unfinished,
            reason => ending(reason),
        };
        letter(&self.text, self.model, ending)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sse::feed;
    use super::*;

    #[test]
    fn the_request_puts_the_system_prompt_apart_from_the_one_user_message() {
        let prompt = Prompt {
            system: "Write letters.".into(),
            user: "Dear \"team\"".into(),
        };
        let body = request("claude-test-1", &prompt, 1256, false).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"model":"claude-test-1","max_tokens":1256,"system":"Write letters.","messages":[{"role":"user","content":"Dear \"team\""}],"stream":false}"#
        );
    }

    #[test]
    fn the_key_and_the_version_travel_in_their_own_headers() {
        letterbox::install_crypto_provider();
        let request = authorize(
            reqwest::Client::new().post("http://127.0.0.1:9/v1/messages"),
            &SecretString::from("sk-ant-test"),
        )
        .build()
        .unwrap();
        let headers = request.headers();
        assert_eq!(headers["x-api-key"], "sk-ant-test");
        assert!(headers["x-api-key"].is_sensitive());
        assert_eq!(headers["anthropic-version"], "2023-06-01");
        assert!(headers.get(reqwest::header::AUTHORIZATION).is_none());
    }

    const MESSAGE: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-test-1","content":[{"type":"text","text":"  Dear team,\n"},{"type":"text","text":"thanks."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":4}}"#;

    #[test]
    fn a_message_yields_its_text_blocks_trimmed_and_its_model() {
        assert_eq!(
            parse(MESSAGE.as_bytes()),
            Ok((
                "Dear team,\nthanks.".to_owned(),
                Some("claude-test-1".to_owned())
            ))
        );
        // Blocks that are not text are not the letter.
        let body = r#"{"type":"message","content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"Dear team,"}],"stop_reason":"end_turn"}"#;
        assert_eq!(parse(body.as_bytes()), Ok(("Dear team,".to_owned(), None)));
    }

    #[test]
    fn unusable_messages_are_errors() {
        let message = |content: &str, stop: &str| {
            format!(r#"{{"type":"message","content":[{content}],"stop_reason":"{stop}"}}"#)
        };
        let text = r#"{"type":"text","text":"Dear"}"#;
        assert_eq!(
            parse(message(text, "max_tokens").as_bytes()),
            Err(LlmError::Truncated)
        );
        assert_eq!(
            parse(message("", "refusal").as_bytes()),
            Err(LlmError::ContentFiltered)
        );
        assert_eq!(
            parse(message(r#"{"type":"text","text":" "}"#, "end_turn").as_bytes()),
            Err(LlmError::Empty)
        );
        assert_eq!(
            parse(br#"{"type":"message","id":"msg_01"}"#),
            Err(LlmError::InvalidResponse("not a message"))
        );
        assert_eq!(
            parse(b"<html>"),
            Err(LlmError::InvalidResponse("not a message"))
        );
        // Cut inside its JSON: an answer cut short, retried.
        assert_eq!(parse(&MESSAGE.as_bytes()[..80]), Err(LlmError::Incomplete));
    }

    #[test]
    fn a_whole_answer_that_is_an_error_object_is_a_failure_with_its_type_only() {
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded; your key sk-ant-123"}}"#;
        assert_eq!(
            parse(body),
            Err(LlmError::StreamError(Some("overloaded_error".into())))
        );
    }

    fn stream(body: &str) -> Result<Answer, LlmError> {
        feed(body, StreamedMessage::default())
    }

    /// The start of a stream as Anthropic sends it: named events, CRLF line ends in places,
    /// a ping between blocks.
    const START: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-test-1\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\r\n\
data: {\"type\": \"ping\"}\r\n\r\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Dear \"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"team,\"}}\n\n";

    fn ending_with(stop_reason: &str) -> String {
        format!(
            "{START}event: content_block_stop\n\
data: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
event: message_delta\n\
data: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{stop_reason}\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":4}}}}\n\n\
event: message_stop\n\
data: {{\"type\":\"message_stop\"}}\n\n"
        )
    }

    #[test]
    fn a_stream_counts_only_when_it_says_it_is_finished() {
        assert_eq!(
            stream(&ending_with("end_turn")),
            Ok(("Dear team,".to_owned(), Some("claude-test-1".to_owned())))
        );
        // Cut before `message_delta` and `message_stop`: a failure, not a short letter.
        assert_eq!(stream(START), Err(LlmError::Incomplete));
        assert_eq!(stream(&ending_with("max_tokens")), Err(LlmError::Truncated));
        assert_eq!(
            stream(&ending_with("refusal")),
            Err(LlmError::ContentFiltered)
        );
        assert_eq!(
            stream("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
            Err(LlmError::Empty)
        );
    }

    #[test]
    fn an_error_event_after_the_200_is_a_failure_with_its_type_only() {
        let errored = format!(
            "{START}event: error\n\
data: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded, sk-ant-123\"}}}}\n\n"
        );
        assert_eq!(
            stream(&errored),
            Err(LlmError::StreamError(Some("overloaded_error".into())))
        );
    }

    #[test]
    fn events_of_other_kinds_are_skipped_and_malformed_ones_are_not() {
        let other_deltas = format!(
            "{START}event: content_block_delta\n\
data: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{{}}\"}}}}\n\n\
event: something_new\n\
data: {{\"type\":\"something_new\",\"text\":\"not the letter\"}}\n\n\
event: message_stop\n\
data: {{\"type\":\"message_stop\"}}\n\n"
        );
        assert_eq!(
            stream(&other_deltas),
            Ok(("Dear team,".to_owned(), Some("claude-test-1".to_owned())))
        );
        assert_eq!(
            stream("data: {not json\n\n"),
            Err(LlmError::InvalidResponse("a stream event that is not JSON"))
        );
        assert_eq!(
            stream("data: {\"index\":0}\n\n"),
            Err(LlmError::InvalidResponse("a stream event without a type"))
        );
    }
}
