//! A pre-flight check of PDF syntax before the real parser sees it.
//!
//! pdf_oxide parses arrays and dictionaries recursively with no depth limit, so a 100 KB file of
//! nested `[[[[…` overflows any thread's stack, and a stack overflow aborts the whole process:
//! `catch_unwind` cannot stop it. This scanner walks the same bytes iteratively and refuses
//! nesting no real document has, both in the file's objects and inside its streams (content
//! streams and object streams are parsed the same recursive way), after undoing the usual
//! compression filters.
//!
//! Known gaps: streams of encrypted files are ciphertext here and are not looked into, and PNG
//! or TIFF predictors are not undone. For those, the extraction subprocess is the backstop: its
//! crash costs one request.

use pdf_oxide::decoders::{
    Ascii85Decoder, AsciiHexDecoder, BrotliDecoder, FlateDecoder, LzwDecoder, RunLengthDecoder,
    StreamDecoder,
};

use crate::ExtractError;

/// Object nesting refused in the file's own syntax; real documents stay under about 10.
const MAX_OBJECT_NESTING: usize = 256;

/// Nesting refused inside stream data. Higher, because image and font bytes decoded here also
/// contain `[` and `<<` at random; a few thousand levels still fit comfortably on the stack.
const MAX_STREAM_NESTING: usize = 4096;

const TOO_DEEP: ExtractError = ExtractError::Unreadable {
    reason: "the PDF's structure is nested far deeper than any real document",
};
const BOMB: ExtractError = ExtractError::Unreadable {
    reason: "the PDF unpacks to far more data than a resume holds",
};

/// Refuses PDFs whose syntax nests deeper than the parser can safely follow. `budget` bounds how
/// many bytes the stream filters may produce in total.
pub(crate) fn check(bytes: &[u8], budget: u64) -> Result<(), ExtractError> {
    let mut remaining = budget;
    let mut lexer = Lexer::new(bytes);
    let mut depth = 0usize;
    let mut dict = StreamDict::default();
    while let Some(token) = lexer.next_token() {
        match token {
            Token::ArrayStart | Token::DictStart => {
                depth += 1;
                if depth > MAX_OBJECT_NESTING {
                    return Err(TOO_DEEP);
                }
                dict.open(depth, matches!(token, Token::ArrayStart));
            }
            Token::DictEnd => depth = depth.saturating_sub(1),
            Token::Name(name) => dict.name(depth, name),
            Token::ArrayEnd => {
                dict.array_end(depth);
                depth = depth.saturating_sub(1);
            }
            Token::Word(word) => match word {
                b"obj" | b"endobj" => {
                    depth = 0;
                    dict = StreamDict::default();
                }
                b"stream" => {
                    let body = lexer.stream_body(dict.length(&lexer));
                    // Ciphertext of an encrypted file fails to decode and is skipped like any
                    // other undecodable stream.
                    check_stream(body, &dict.filters, &mut remaining)?;
                    dict = StreamDict::default();
                }
                other => dict.word(depth, other, lexer.position()),
            },
        }
    }
    Ok(())
}

fn check_stream(body: &[u8], filters: &[Vec<u8>], remaining: &mut u64) -> Result<(), ExtractError> {
    let flate = |filter: &Vec<u8>| matches!(filter.as_slice(), b"FlateDecode" | b"Fl");
    // A dictionary can be made to look as if it named other filters than the parser will use;
    // zlib data is recognisable by itself, so it is looked into whatever the labels say.
    if !filters.iter().any(flate) && looks_like_zlib(body) {
        check_decoded(body, &[b"FlateDecode".to_vec()], remaining)?;
    }
    check_decoded(body, filters, remaining)
}

fn check_decoded(
    body: &[u8],
    filters: &[Vec<u8>],
    remaining: &mut u64,
) -> Result<(), ExtractError> {
    let mut data = std::borrow::Cow::Borrowed(body);
    for filter in filters {
        let decoded = match filter.as_slice() {
            b"FlateDecode" | b"Fl" => {
                FlateDecoder::with_limit(remaining.saturating_add(1)).decode(&data)
            }
            b"LZWDecode" | b"LZW" => LzwDecoder.decode(&data),
            b"RunLengthDecode" | b"RL" => RunLengthDecoder.decode(&data),
            b"ASCIIHexDecode" | b"AHx" => AsciiHexDecoder.decode(&data),
            b"ASCII85Decode" | b"A85" => Ascii85Decoder.decode(&data),
            b"BrotliDecode" => BrotliDecoder.decode(&data),
            // Image codecs produce pixels, which nothing parses as PDF syntax.
            _ => return Ok(()),
        };
        let decoded = match decoded {
            Ok(decoded) => decoded,
            // The flate decoder stops at the budget with this error.
            Err(error) if error.to_string().contains("safety limit") => return Err(BOMB),
            // Undecodable data is undecodable for the parser too: it never parses it.
            Err(_) => return Ok(()),
        };
        let produced = decoded.len() as u64;
        if produced > *remaining {
            return Err(BOMB);
        }
        *remaining -= produced;
        data = std::borrow::Cow::Owned(decoded);
    }
    if max_nesting(&data, MAX_STREAM_NESTING) > MAX_STREAM_NESTING {
        return Err(TOO_DEEP);
    }
    Ok(())
}

/// Deepest nesting of arrays and dictionaries in content syntax, stopping early past `limit`.
fn max_nesting(data: &[u8], limit: usize) -> usize {
    let mut lexer = Lexer::new(data);
    let mut depth = 0usize;
    let mut deepest = 0usize;
    while let Some(token) = lexer.next_token() {
        match token {
            Token::ArrayStart | Token::DictStart => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    break;
                }
            }
            Token::DictEnd | Token::ArrayEnd => depth = depth.saturating_sub(1),
            Token::Name(_) | Token::Word(_) => {}
        }
    }
    deepest
}

/// What the scanner needs from a stream's dictionary: its filters and its direct length.
#[derive(Default)]
struct StreamDict {
    filters: Vec<Vec<u8>>,
    /// The key just read at the top level of the dictionary, when its value matters.
    expecting: Option<Key>,
    in_filter_array: bool,
    length: Option<(usize, usize)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Filter,
    Length,
}

impl StreamDict {
    fn open(&mut self, depth: usize, array: bool) {
        if depth == 2 && self.expecting == Some(Key::Filter) {
            self.expecting = None;
            self.in_filter_array = array;
            if array {
                self.filters.clear();
            }
        }
    }

    fn name(&mut self, depth: usize, name: &[u8]) {
        if self.in_filter_array && depth == 2 {
            self.filters.push(name.to_vec());
            return;
        }
        if depth != 1 {
            return;
        }
        match self.expecting.take() {
            Some(Key::Filter) => self.filters = vec![name.to_vec()],
            _ => {
                self.expecting = match name {
                    b"Filter" => Some(Key::Filter),
                    b"Length" => Some(Key::Length),
                    _ => None,
                };
            }
        }
    }

    fn word(&mut self, depth: usize, word: &[u8], end: usize) {
        if depth != 1 {
            return;
        }
        if self.expecting.take() == Some(Key::Length) {
            self.length = std::str::from_utf8(word)
                .ok()
                .and_then(|w| w.parse().ok())
                .map(|n| (n, end));
        }
    }

    fn array_end(&mut self, depth: usize) {
        if depth == 2 {
            self.in_filter_array = false;
        }
    }

    /// The direct `/Length`, unless it is really the object number of an indirect reference
    /// (`/Length 12 0 R`).
    fn length(&self, lexer: &Lexer<'_>) -> Option<usize> {
        let (length, end) = self.length?;
        let mut ahead = Lexer {
            data: lexer.data,
            pos: end,
        };
        match (ahead.next_token(), ahead.next_token()) {
            (Some(Token::Word(_)), Some(Token::Word(b"R"))) => None,
            _ => Some(length),
        }
    }
}

enum Token<'a> {
    ArrayStart,
    ArrayEnd,
    DictStart,
    DictEnd,
    Name(&'a [u8]),
    Word(&'a [u8]),
}

/// A minimal PDF tokenizer: skips strings, hex strings and comments, reports delimiters, names
/// and bare words. Never recurses.
struct Lexer<'a> {
    data: &'a [u8],
    pos: usize,
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' | b'\0')
}

impl<'a> Lexer<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn position(&self) -> usize {
        self.pos
    }

    fn next_token(&mut self) -> Option<Token<'a>> {
        loop {
            let b = *self.data.get(self.pos)?;
            match b {
                _ if is_space(b) => self.pos += 1,
                b'%' => self.skip_until(|b| b == b'\n' || b == b'\r'),
                b'(' => self.skip_literal_string(),
                b'<' if self.data.get(self.pos + 1) == Some(&b'<') => {
                    self.pos += 2;
                    return Some(Token::DictStart);
                }
                b'<' => {
                    self.skip_until(|b| b == b'>');
                    self.pos += 1;
                }
                b'>' if self.data.get(self.pos + 1) == Some(&b'>') => {
                    self.pos += 2;
                    return Some(Token::DictEnd);
                }
                b'[' => {
                    self.pos += 1;
                    return Some(Token::ArrayStart);
                }
                b']' => {
                    self.pos += 1;
                    return Some(Token::ArrayEnd);
                }
                b'/' => {
                    self.pos += 1;
                    let start = self.pos;
                    self.skip_until(|b| is_space(b) || is_delimiter(b));
                    return Some(Token::Name(&self.data[start..self.pos]));
                }
                _ if is_delimiter(b) => self.pos += 1,
                _ => {
                    let start = self.pos;
                    self.skip_until(|b| is_space(b) || is_delimiter(b));
                    return Some(Token::Word(&self.data[start..self.pos]));
                }
            }
        }
    }

    fn skip_until(&mut self, stop: impl Fn(u8) -> bool) {
        while self.data.get(self.pos).is_some_and(|&b| !stop(b)) {
            self.pos += 1;
        }
    }

    /// `( … )` with balanced parentheses and backslash escapes.
    fn skip_literal_string(&mut self) {
        let mut depth = 0usize;
        while let Some(&b) = self.data.get(self.pos) {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// The data after a `stream` keyword, bounded by the direct length when it checks out and by
    /// the next `endstream` otherwise; the lexer continues after it.
    fn stream_body(&mut self, length: Option<usize>) -> &'a [u8] {
        let data = self.data;
        let mut start = self.pos;
        if data.get(start) == Some(&b'\r') {
            start += 1;
        }
        if data.get(start) == Some(&b'\n') {
            start += 1;
        }
        let by_length = length.and_then(|length| {
            let end = start.checked_add(length)?;
            let after = data.get(end..)?;
            let trimmed = after
                .iter()
                .position(|&b| !is_space(b))
                .map(|skip| &after[skip..])?;
            trimmed.starts_with(b"endstream").then_some(end)
        });
        let end = by_length.unwrap_or_else(|| {
            find(&data[start.min(data.len())..], b"endstream")
                .map_or(data.len(), |offset| start + offset)
        });
        self.pos = end;
        &data[start.min(end)..end]
    }
}

/// A zlib header: deflate method, a window size, and a check value divisible by 31.
fn looks_like_zlib(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => {
            cmf & 0x0F == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const BUDGET: u64 = 50 * 1024 * 1024;

    fn nested(depth: usize) -> Vec<u8> {
        [vec![b'['; depth], vec![b']'; depth]].concat()
    }

    #[test]
    fn ordinary_objects_pass() {
        let pdf = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R /Names [ (a[[[[) <5B5B> [ 1 [ 2 ] ] ] >>\nendobj\n% [[[[[[ comment\n";
        assert_eq!(check(pdf, BUDGET), Ok(()));
    }

    #[test]
    fn deep_object_nesting_is_refused() {
        let mut pdf = b"%PDF-1.4\n1 0 obj\n".to_vec();
        pdf.extend(nested(MAX_OBJECT_NESTING + 1));
        assert_eq!(check(&pdf, BUDGET), Err(TOO_DEEP));
        let mut dicts = b"%PDF-1.4\n1 0 obj\n".to_vec();
        dicts.extend(b"<< /A ".repeat(MAX_OBJECT_NESTING + 1));
        assert_eq!(check(&dicts, BUDGET), Err(TOO_DEEP));
    }

    #[test]
    fn deep_nesting_in_an_uncompressed_stream_is_refused() {
        let body = nested(MAX_STREAM_NESTING + 1);
        let mut pdf =
            format!("%PDF-1.4\n4 0 obj\n<< /Length {} >>\nstream\n", body.len()).into_bytes();
        pdf.extend(&body);
        pdf.extend(b"\nendstream\nendobj\n");
        assert_eq!(check(&pdf, BUDGET), Err(TOO_DEEP));
    }

    #[test]
    fn deep_nesting_in_a_hex_encoded_stream_is_refused() {
        let body: String = nested(MAX_STREAM_NESTING + 1)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let pdf = format!(
            "%PDF-1.4\n4 0 obj\n<< /Length 9 0 R /Filter [ /AHx ] >>\nstream\n{body}>\nendstream\nendobj\n"
        );
        assert_eq!(check(pdf.as_bytes(), BUDGET), Err(TOO_DEEP));
    }

    /// zlib framing around stored (uncompressed) deflate blocks: enough to exercise the filter.
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x78, 0x01];
        let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            out.push(u8::from(i + 1 == chunks.len()));
            let len = chunk.len() as u16;
            out.extend(len.to_le_bytes());
            out.extend((!len).to_le_bytes());
            out.extend(*chunk);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65_521;
            b = (b + a) % 65_521;
        }
        out.extend(((b << 16) | a).to_be_bytes());
        out
    }

    fn stream_object(dict: &str, body: &[u8]) -> Vec<u8> {
        let mut pdf = format!(
            "%PDF-1.4\n4 0 obj\n<< /Length {} {dict} >>\nstream\n",
            body.len()
        )
        .into_bytes();
        pdf.extend(body);
        pdf.extend(b"\nendstream\nendobj\n");
        pdf
    }

    #[test]
    fn deep_nesting_in_a_flate_stream_is_refused_even_when_mislabelled() {
        let body = zlib_stored(&nested(MAX_STREAM_NESTING + 1));
        assert_eq!(
            check(&stream_object("/Filter /FlateDecode", &body), BUDGET),
            Err(TOO_DEEP)
        );
        assert_eq!(
            check(&stream_object("/Filter /DCTDecode", &body), BUDGET),
            Err(TOO_DEEP)
        );
        assert_eq!(
            check(&stream_object("/Foo /Filter /DCTDecode", &body), BUDGET),
            Err(TOO_DEEP)
        );
    }

    #[test]
    fn streams_beyond_the_budget_are_refused() {
        let body = zlib_stored(&[b'x'; 4096]);
        assert_eq!(
            check(&stream_object("/Filter /FlateDecode", &body), 1024),
            Err(BOMB)
        );
        assert_eq!(
            check(&stream_object("/Filter /FlateDecode", &body), 8192),
            Ok(())
        );
    }

    #[test]
    fn moderate_nesting_in_streams_passes() {
        let body = nested(100);
        let mut pdf =
            format!("%PDF-1.4\n4 0 obj\n<< /Length {} >>\nstream\n", body.len()).into_bytes();
        pdf.extend(&body);
        pdf.extend(b"\nendstream\nendobj\n");
        assert_eq!(check(&pdf, BUDGET), Ok(()));
    }
}
