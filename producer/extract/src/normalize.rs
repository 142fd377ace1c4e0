//! Text clean-up shared by every source: PDF and DOCX output, decoded text files and text that
//! clients paste directly. What comes out is what the prompt receives, so anything invisible to a
//! human reader (icon-font glyphs, zero-width characters, control codes) is removed here.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Cleans text for a prompt: Unicode NFC, ligatures spelled out, invisible and private-use
/// characters removed, Unicode spaces made plain, line endings unified, letter-spaced lines
/// ("S E N I O R   E N G I N E E R") rejoined, runs of spaces collapsed, at most one blank line in
/// a row, no leading or trailing blank space.
pub fn normalize(text: &str) -> String {
    let cleaned = clean_chars(text);
    // Most text (all ASCII, most Latin text) is NFC already; quick checks save composing it.
    let composed = if below_combining_marks(&cleaned) {
        cleaned
    } else {
        match is_nfc_quick(cleaned.chars()) {
            IsNormalized::Yes => cleaned,
            IsNormalized::No | IsNormalized::Maybe => cleaned.nfc().collect(),
        }
    };

    let mut out = String::with_capacity(composed.len());
    let mut blank_run = 0usize;
    for line in composed.split('\n') {
        let line_start = out.len();
        let shape = LineShape::of(line);
        if shape.may_be_letter_spaced() {
            collapse_spaces_into(&repair_letter_spacing(line), &mut out);
        } else if shape.plain {
            out.push_str(line);
        } else {
            collapse_spaces_into(line, &mut out);
        }
        if out.len() == line_start {
            blank_run += 1;
            // A single blank line separates paragraphs and pages; more says nothing more.
            if blank_run == 1 && !out.is_empty() {
                out.push('\n');
            }
            continue;
        }
        blank_run = 0;
        out.push('\n');
    }
    // Trimmed in place: leading blank space can only be a space or a line break by now.
    let end = out.trim_end().len();
    out.truncate(end);
    let start = out.len() - out.trim_start().len();
    out.drain(..start);
    out
}

/// Per-character pass: everything that does not depend on neighbouring characters except CRLF.
/// Runs of characters kept as they are (nearly all of them) are copied whole.
fn clean_chars(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut kept_from = 0;
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        // Printable ASCII, the bulk of any resume, stays as it is.
        if matches!(byte, b' '..=b'~' | b'\n' | b'\t') {
            at += 1;
            continue;
        }
        let Some(c) = text[at..].chars().next() else {
            break;
        };
        let mut next = at + c.len_utf8();
        let replacement = match c {
            '\r' => {
                if bytes.get(next) == Some(&b'\n') {
                    next += 1;
                }
                "\n"
            }
            // Form feeds (PDF page breaks), vertical tabs and Unicode line separators break
            // lines; dropping them like other controls would glue two words together.
            '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}' => "\n",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' | 'ﬆ' => "st",
            c if is_invisible(c) => "",
            c if c.is_whitespace() => " ",
            _ => {
                at = next;
                continue;
            }
        };
        out.push_str(&text[kept_from..at]);
        out.push_str(replacement);
        at = next;
        kept_from = next;
    }
    out.push_str(&text[kept_from..]);
    out
}

/// Text made only of characters below U+0300 is in NFC: nothing there composes or reorders
/// (combining marks and the characters NFC changes all come later). Such characters take at
/// most two bytes, the first below 0xCC, so a byte scan decides it.
fn below_combining_marks(text: &str) -> bool {
    text.bytes().all(|byte| byte < 0xCC)
}

/// Characters that carry nothing a reader sees: controls, zero-width and bidirectional-control
/// characters (which can also hide or reorder text), the soft hyphen,
/// and private-use code points (icon fonts such as Font Awesome map their glyphs there, and an
/// LLM would read them as noise).
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{AD}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{E000}'..='\u{F8FF}'
            | '\u{F0000}'..='\u{10FFFF}')
}

/// Appends `line` with every run of spaces and tabs collapsed to one space and none at the end
/// (a line's leading run stays a space, except at the very start of `out`).
fn collapse_spaces_into(line: &str, out: &mut String) {
    let mut gap_before = false;
    let mut word_start = None;
    for (at, byte) in line.bytes().enumerate() {
        let gap = byte == b' ' || byte == b'\t';
        match (gap, word_start) {
            (true, Some(start)) => {
                out.push_str(&line[start..at]);
                word_start = None;
                gap_before = true;
            }
            (true, None) => gap_before = true,
            (false, None) => {
                if gap_before && !out.is_empty() {
                    out.push(' ');
                }
                word_start = Some(at);
            }
            (false, Some(_)) => {}
        }
    }
    if let Some(start) = word_start {
        out.push_str(&line[start..]);
    }
}

/// What one pass over a line's bytes tells: how many tokens (runs between spaces and tabs) it
/// has and how many of them are a single character, and whether it is already clean (no tab, no
/// run of spaces, no space at either end), so it can be copied as it is.
struct LineShape {
    tokens: usize,
    single_char_tokens: usize,
    plain: bool,
}

impl LineShape {
    fn of(line: &str) -> Self {
        let mut shape = Self {
            tokens: 0,
            single_char_tokens: 0,
            plain: true,
        };
        // Characters of the token being read; UTF-8 continuation bytes do not start one.
        let mut token_chars = 0usize;
        let mut previous_gap = true;
        for byte in line.bytes() {
            let gap = byte == b' ' || byte == b'\t';
            if gap {
                if token_chars > 0 {
                    shape.end_token(token_chars);
                    token_chars = 0;
                }
                shape.plain &= byte == b' ' && !previous_gap;
            } else if byte & 0xC0 != 0x80 {
                token_chars += 1;
            }
            previous_gap = gap;
        }
        if token_chars > 0 {
            shape.end_token(token_chars);
        }
        shape.plain &= !previous_gap || line.is_empty();
        shape
    }

    fn end_token(&mut self, chars: usize) {
        self.tokens += 1;
        self.single_char_tokens += usize::from(chars == 1);
    }

    /// The first test [`repair_letter_spacing`] makes; nearly every line fails it.
    fn may_be_letter_spaced(&self) -> bool {
        self.tokens >= 4 && self.single_char_tokens * 10 >= self.tokens * 9
    }
}

/// Rejoins a line that some PDF producers (Chromium's among them) emit one glyph at a time:
/// "S E N I O R   E N G I N E E R" becomes "SENIOR ENGINEER". Single spaces sit between the
/// letters of a word and wider gaps between words, so this has to run before spaces are
/// collapsed. Lines that are not mostly single characters are returned unchanged.
fn repair_letter_spacing(line: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;

    // Words of the line, each a list of the tokens that single spaces separate.
    let mut words: Vec<Vec<&str>> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut rest = line.trim_matches([' ', '\t']);
    while !rest.is_empty() {
        let token_end = rest.find([' ', '\t']).unwrap_or(rest.len());
        current.push(&rest[..token_end]);
        rest = &rest[token_end..];
        let gap_end = rest.find(|c| c != ' ' && c != '\t').unwrap_or(rest.len());
        if &rest[..gap_end] != " " {
            words.push(std::mem::take(&mut current));
        }
        rest = &rest[gap_end..];
    }
    if !current.is_empty() {
        words.push(current);
    }

    let tokens: Vec<&str> = words.iter().flatten().copied().collect();
    let singles = tokens.iter().filter(|t| is_single_char(t)).count();
    let single_letters = tokens
        .iter()
        .filter(|t| is_single_char(t) && t.chars().all(char::is_alphanumeric))
        .count();
    let letter_gaps = words
        .iter()
        .map(|w| w.len().saturating_sub(1))
        .sum::<usize>();
    // Strict on purpose: "Grades: A B C" or "C# C++ R Go" must survive untouched.
    let spaced_out = tokens.len() >= 4
        && singles * 10 >= tokens.len() * 9
        && single_letters >= 4
        && letter_gaps >= 3;
    if !spaced_out {
        return Cow::Borrowed(line);
    }
    let joined: Vec<String> = words.iter().map(|w| w.concat()).collect();
    Cow::Owned(joined.join(" "))
}

fn is_single_char(token: &str) -> bool {
    let mut chars = token.chars();
    chars.next().is_some() && chars.next().is_none()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ligatures_are_spelled_out() {
        assert_eq!(
            normalize("ﬁnance ﬂow oﬀer oﬃce baﬄe ﬅyle ﬆack"),
            "finance flow offer office baffle style stack"
        );
    }

    #[test]
    fn text_below_combining_marks_is_already_nfc() {
        // What the byte scan relies on: every character below U+0300 is NFC on its own (quick
        // check "Yes": it never composes with the one before) and a starter (nothing reorders).
        for c in ('\0'..'\u{300}').chain(['\u{2FF}']) {
            let text = c.to_string();
            assert!(below_combining_marks(&text), "{c:?}");
            assert_eq!(is_nfc_quick(text.chars()), IsNormalized::Yes, "{c:?}");
            assert_eq!(unicode_normalization::char::canonical_combining_class(c), 0);
        }
        assert!(!below_combining_marks("e\u{301}"));
        assert!(!below_combining_marks("山"));
    }

    #[test]
    fn decomposed_accents_are_composed() {
        // "Boğaziçi" with combining breve and cedilla, as some PDFs store it.
        let decomposed = "Bog\u{306}azic\u{327}i";
        let normalized = normalize(decomposed);
        assert_eq!(normalized, "Boğaziçi");
        assert_eq!(normalized.chars().count(), 8);
    }

    #[test]
    fn private_use_and_invisible_characters_are_removed() {
        let text = "\u{F0E0} john@example.com\u{200B} | \u{F095} +1\u{00AD}555\u{FEFF} \u{F3E8B}x\u{2060}y\u{7}z";
        assert_eq!(normalize(text), "john@example.com | +1555 xyz");
    }

    #[test]
    fn unicode_spaces_become_plain_spaces() {
        assert_eq!(
            normalize("10\u{A0}years\u{2009}of\u{3000}Rust\u{202F}!"),
            "10 years of Rust !"
        );
    }

    #[test]
    fn line_endings_and_blank_lines_are_unified() {
        let text = "\n\n  Title  \r\n\r\n\r\n\r\nFirst\rSecond\u{0C}Third   \t \n\n\n";
        assert_eq!(normalize(text), "Title\n\nFirst\nSecond\nThird");
    }

    #[test]
    fn spaces_and_tabs_collapse_within_a_line() {
        assert_eq!(normalize("Rust\t\t and   Go\t"), "Rust and Go");
        assert_eq!(normalize("  \t Rust\r\n \u{A0}Go\u{200B} \r"), "Rust\n Go");
        assert_eq!(normalize("ﬁ\r\n\r\n\u{2003}\u{2003}x ﬂ"), "fi\n\n x fl");
        assert_eq!(normalize("a\n  - nested item"), "a\n - nested item");
    }

    #[test]
    fn letter_spaced_lines_are_rejoined() {
        assert_eq!(
            normalize("S E N I O R   E N G I N E E R"),
            "SENIOR ENGINEER"
        );
        assert_eq!(
            normalize("J A N E   D O E\nSenior engineer"),
            "JANE DOE\nSenior engineer"
        );
        assert_eq!(normalize("2 0 1 9  –  2 0 2 4"), "2019 – 2024");
        assert_eq!(normalize("E X P E R I E N C E"), "EXPERIENCE");
    }

    #[test]
    fn ordinary_lines_with_short_tokens_are_left_alone() {
        assert_eq!(normalize("Grades: A B C"), "Grades: A B C");
        assert_eq!(normalize("Languages: C R Go"), "Languages: C R Go");
        assert_eq!(normalize("A B C"), "A B C");
        assert_eq!(normalize("I am a Rust developer"), "I am a Rust developer");
    }

    #[test]
    fn markdown_structure_survives() {
        let markdown =
            "# Jane Doe\n\n## Experience\n\n- **Rust** at [Acme](https://acme.example)\n- Go";
        assert_eq!(normalize(markdown), markdown);
    }

    #[test]
    fn empty_and_blank_inputs_give_empty_text() {
        assert_eq!(normalize(""), "");
        assert_eq!(normalize(" \n\t\r\n\u{200B}\u{A0}"), "");
    }
}
