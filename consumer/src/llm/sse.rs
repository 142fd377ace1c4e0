//! Server-sent events, as both providers stream: the byte stream split into events' `data`,
//! and a loop that hands each to the provider's reader until it says the answer is done.

use super::{Answer, LlmError, MAX_RESPONSE_BYTES, Pieces};

/// What a provider's stream reader does with events.
pub(super) trait StreamReader {
    /// Takes one event's data; true once the stream has said it is done.
    fn event(&mut self, data: &[u8]) -> Result<bool, LlmError>;
    /// The letter, once the stream has ended or said it is done.
    fn finish(self) -> Result<Answer, LlmError>;
    /// The letter's text received so far.
    fn text(&self) -> &str;
}

/// Reads a streamed completion. The letter counts only if the stream says it is finished: a
/// stream that stops short, or carries an error event after its 200, is a failure, never a
/// short letter.
/// With `pieces`, each event's new text is handed on as it arrives.
pub(super) async fn read_stream<R: StreamReader>(
    mut response: reqwest::Response,
    mut reader: R,
    pieces: Option<&Pieces>,
) -> Result<Answer, LlmError> {
    let mut decoder = SseDecoder::default();
    let mut received = 0;
    let mut handed_on = 0;
    'body: while let Some(chunk) = response.chunk().await.map_err(|_| LlmError::Incomplete)? {
        received += chunk.len();
        if received > MAX_RESPONSE_BYTES {
            return Err(LlmError::InvalidResponse("the body is too large"));
        }
        for data in decoder.push(&chunk) {
            let done = reader.event(&data)?;
            if let Some(pieces) = pieces {
                let text = reader.text();
                if text.len() > handed_on {
                    pieces.send(&text[handed_on..]);
                    handed_on = text.len();
                }
            }
            if done {
                break 'body;
            }
        }
    }
    reader.finish()
}

/// Splits a byte stream into the `data` of server-sent events (lines `data: …`, events ended by
/// a blank line; comments and other fields, `event:` included, ignored: both providers repeat
/// an event's type inside its data).
#[derive(Default)]
pub(super) struct SseDecoder {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseDecoder {
    pub(super) fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
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

/// `body` fed to `reader` in awkward pieces, as a network delivers them.
#[cfg(test)]
pub(super) fn feed<R: StreamReader>(body: &str, mut reader: R) -> Result<Answer, LlmError> {
    let mut decoder = SseDecoder::default();
    for piece in body.as_bytes().chunks(7) {
        for data in decoder.push(piece) {
            if reader.event(&data)? {
                return reader.finish();
            }
        }
    }
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_on_blank_lines_whatever_the_line_ends_and_pieces() {
        let mut decoder = SseDecoder::default();
        let body =
            b"event: ping\ndata: {\"a\":1}\n\n: comment\n\ndata: x\r\ndata: y\r\n\r\ndata: cut";
        let mut events = Vec::new();
        for piece in body.chunks(3) {
            events.extend(decoder.push(piece));
        }
        assert_eq!(events, [b"{\"a\":1}".to_vec(), b"x\ny".to_vec()]);
    }
}
