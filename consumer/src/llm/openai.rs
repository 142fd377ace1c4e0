//! OpenAI's chat completions (`POST {LLM_BASE_URL}/chat/completions`), which most providers and
//! gateways also speak: the request, the whole answer and the streamed one.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::sse::StreamReader;
use super::{Answer, Ending, ErrorBody, LlmError, WireMessage, error_code, letter, unreadable};
use crate::prompt::Prompt;

/// A chat-completions request, borrowing the prompt.
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: [WireMessage<'a>; 2],
    max_tokens: u32,
    stream: bool,
}

pub(super) fn request(
    model: &str,
    prompt: &Prompt,
    max_tokens: u32,
    stream: bool,
) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&ChatRequest {
        model,
        messages: [
            WireMessage {
                role: "system",
                content: &prompt.system,
            },
            WireMessage {
                role: "user",
                content: &prompt.user,
            },
        ],
        max_tokens,
        stream,
    })
}

pub(super) fn authorize(
    request: reqwest::RequestBuilder,
    key: &SecretString,
) -> reqwest::RequestBuilder {
    request.bearer_auth(key.expose_secret())
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

fn ending(finish_reason: Option<&str>) -> Ending {
    match finish_reason {
        Some("content_filter") => Ending::Filtered,
        Some("length") => Ending::Truncated,
        _ => Ending::Finished,
    }
}

/// A whole answer.
pub(super) fn parse(body: &[u8]) -> Result<Answer, LlmError> {
    let response: ChatResponse =
        serde_json::from_slice(body).map_err(|e| unreadable(&e, "not a chat completion"))?;
    if let Some(error) = response.error {
        return Err(LlmError::StreamError(error_code(error)));
    }
    let choice = response
        .choices
        .into_iter()
        .next()
        .ok_or(LlmError::InvalidResponse("no choices"))?;
    let text = choice.message.and_then(|m| m.content).unwrap_or_default();
    letter(
        &text,
        response.model,
        ending(choice.finish_reason.as_deref()),
    )
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

/// A streamed answer: chunks of `choices[0].delta.content`, finished by a `finish_reason` or
/// `data: [DONE]`.
#[derive(Default)]
pub(super) struct StreamedLetter {
    text: String,
    model: Option<String>,
    finish_reason: Option<String>,
    done: bool,
}

impl StreamReader for StreamedLetter {
    fn text(&self) -> &str {
        &self.text
    }

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

    fn finish(self) -> Result<Answer, LlmError> {
        let ending = match self.finish_reason.as_deref() {
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
    fn the_request_names_the_model_both_messages_and_the_token_limit() {
        let prompt = Prompt {
            system: "Write letters.".into(),
            user: "Dear \"team\"".into(),
        };
        let body = request("gpt-4o-mini", &prompt, 1256, true).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Write letters."},{"role":"user","content":"Dear \"team\""}],"max_tokens":1256,"stream":true}"#
        );
    }

    #[test]
    fn a_completion_yields_its_trimmed_text_and_model() {
        let body = br#"{"model":"m-1","choices":[{"message":{"role":"assistant","content":"  Dear team,\n"},"finish_reason":"stop"}]}"#;
        assert_eq!(
            parse(body),
            Ok(("Dear team,".to_owned(), Some("m-1".to_owned())))
        );
    }

    #[test]
    fn control_characters_and_bidi_overrides_never_reach_the_client() {
        let body = "{\"choices\":[{\"message\":{\"content\":\"Dear\\u0000 team,\\u001b[2J\\n\\tthanks\\u202e!\"},\"finish_reason\":\"stop\"}]}";
        assert_eq!(
            parse(body.as_bytes()),
            Ok(("Dear team,[2J\n\tthanks!".to_owned(), None))
        );
    }

    #[test]
    fn a_whole_answer_that_is_an_error_object_is_a_failure() {
        let body = br#"{"error": {"message": "Sorry about that!", "type": "server_error", "param": null, "code": "internal_error"}}"#;
        assert!(matches!(
            parse(body),
            Err(LlmError::StreamError(Some(code))) if code == "internal_error"
        ));
        // A code that is not a plain identifier is not repeated.
        let body =
            br#"{"error": {"message": "x", "type": "server_error", "code": "key sk-123 is bad"}}"#;
        assert!(matches!(parse(body), Err(LlmError::StreamError(None))));
    }

    #[test]
    fn unusable_completions_are_errors() {
        let filtered =
            br#"{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}"#;
        assert_eq!(parse(filtered), Err(LlmError::ContentFiltered));
        let cut = br#"{"choices":[{"message":{"content":"Dear"},"finish_reason":"length"}]}"#;
        assert_eq!(parse(cut), Err(LlmError::Truncated));
        let empty = br#"{"choices":[{"message":{"content":""},"finish_reason":""}]}"#;
        assert_eq!(parse(empty), Err(LlmError::Empty));
        assert_eq!(
            parse(b"<html>"),
            Err(LlmError::InvalidResponse("not a chat completion"))
        );
        assert_eq!(
            parse(br#"{"choices":[]}"#),
            Err(LlmError::InvalidResponse("no choices"))
        );
        assert_eq!(
            parse(br#"{"choices":[{"message":{"content":"Dear Ms"#),
            Err(LlmError::Incomplete)
        );
    }

    fn stream(body: &str) -> Result<Answer, LlmError> {
        feed(body, StreamedLetter::default())
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
}
