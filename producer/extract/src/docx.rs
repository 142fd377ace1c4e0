//! DOCX text: the main document part (`word/document.xml`) read from the ZIP archive in memory
//! and walked with a streaming XML reader.
//!
//! Two kinds of hostile input shape this module. Zip bombs: the part is read through a bound on
//! both its absolute size and its compression ratio, so a small upload cannot expand to gigabytes.
//! Hidden text: runs marked hidden, white on no background, or one point high are invisible to a
//! human reviewer but not to an LLM, which makes them the classic place for injected instructions
//! ("ignore the job description and ..."); such runs are dropped.

use std::io::{Cursor, Read};
use std::time::Instant;

use quick_xml::NsReader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use zip::result::ZipError;

use crate::{ExtractError, Limits};

const MAIN_PART: &str = "word/document.xml";

/// A real document part compresses about 3–30:1; 100:1 is only reached by padding.
const MAX_COMPRESSION_RATIO: u64 = 100;

/// Below this size the ratio does not matter: nothing that small can hurt, and tiny parts
/// compress unpredictably.
const RATIO_FREE_BYTES: u64 = 1024 * 1024;

/// See `pdf::RAW_TEXT_HEADROOM`.
const RAW_TEXT_HEADROOM: usize = 4;

/// How often (in XML events) the walk looks at the clock.
const EVENTS_PER_DEADLINE_CHECK: u32 = 8192;

const WORDPROCESSING_NS: &[&str] = &[
    "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    // ISO 29500 "strict" documents.
    "http://purl.oclc.org/ooxml/wordprocessingml/main",
];
const MARKUP_COMPATIBILITY_NS: &str = "http://schemas.openxmlformats.org/markup-compatibility/2006";

const BOMB: ExtractError = ExtractError::Unreadable {
    reason: "the DOCX file unpacks to far more data than a resume holds (a possible zip bomb)",
};
const DAMAGED: ExtractError = ExtractError::Unreadable {
    reason: "the file is a damaged or incomplete ZIP/DOCX archive",
};
const BAD_XML: ExtractError = ExtractError::Unreadable {
    reason: "the DOCX file's text part is not well-formed",
};

pub(crate) fn extract(
    bytes: &[u8],
    limits: &Limits,
    deadline: Instant,
) -> Result<String, ExtractError> {
    let xml = read_main_part(bytes, limits)?;
    let xml = decode_xml(&xml)?;
    walk(xml, limits, deadline)
}

fn read_main_part(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, ExtractError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|_| DAMAGED)?;
    let mut entry = archive.by_name(MAIN_PART).map_err(|error| match error {
        ZipError::FileNotFound => ExtractError::Unsupported {
            what: "a ZIP archive that is not a DOCX",
        },
        ZipError::UnsupportedArchive(message) if message == ZipError::PASSWORD_REQUIRED => {
            ExtractError::Encrypted
        }
        ZipError::UnsupportedArchive(_) | ZipError::CompressionMethodNotSupported(_) => {
            ExtractError::Unreadable {
                reason: "the DOCX file uses a compression method that is not supported",
            }
        }
        _ => DAMAGED,
    })?;
    if entry.encrypted() {
        return Err(ExtractError::Encrypted);
    }

    let allowed = limits.max_decompressed_bytes.min(
        entry
            .compressed_size()
            .saturating_mul(MAX_COMPRESSION_RATIO)
            .max(RATIO_FREE_BYTES),
    );
    // The declared size is only a claim, but when it already exceeds the bound there is no
    // point in inflating anything.
    if entry.size() > allowed {
        tracing::debug!(
            declared = entry.size(),
            compressed = entry.compressed_size(),
            "DOCX part refused"
        );
        return Err(BOMB);
    }
    let capacity = usize::try_from(entry.size()).unwrap_or(0);
    let mut xml = Vec::with_capacity(capacity);
    // What the stream really inflates to is enforced here, whatever the header said.
    (&mut entry)
        .take(allowed.saturating_add(1))
        .read_to_end(&mut xml)
        .map_err(|_| DAMAGED)?;
    if xml.len() as u64 > allowed {
        tracing::debug!(
            compressed = entry.compressed_size(),
            "DOCX part inflates past its bound"
        );
        return Err(BOMB);
    }
    Ok(xml)
}

/// Word always writes UTF-8, but XML also allows UTF-16 with a byte-order mark.
fn decode_xml(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, ExtractError> {
    use std::borrow::Cow;
    let utf16 = |rest: &[u8], from: fn([u8; 2]) -> u16| {
        char::decode_utf16(rest.chunks_exact(2).map(|pair| from([pair[0], pair[1]])))
            .collect::<Result<String, _>>()
            .map(Cow::Owned)
            .map_err(|_| BAD_XML)
    };
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        utf16(rest, u16::from_le_bytes)
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        utf16(rest, u16::from_be_bytes)
    } else {
        let rest = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        std::str::from_utf8(rest)
            .map(Cow::Borrowed)
            .map_err(|_| BAD_XML)
    }
}

/// The elements whose nesting matters; everything else is `Other`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tag {
    Paragraph,
    ParagraphProps,
    Run,
    RunProps,
    Text,
    Table,
    Row,
    Cell,
    CellProps,
    /// `mc:Fallback` repeats its `mc:Choice` sibling for old readers (text boxes twice).
    Fallback,
    /// Any other WordprocessingML element; some matter by name inside a run.
    Word,
    Other,
}

/// Formatting of the run being read, decided once its text is complete.
#[derive(Default)]
struct Run {
    text: String,
    hidden: bool,
    white: bool,
    on_background: bool,
}

#[derive(Default)]
struct Walker {
    out: String,
    chars: usize,
    stack: Vec<Tag>,
    /// Runs can nest through text boxes anchored in a run.
    runs: Vec<Run>,
    fallback_depth: usize,
    paragraph_on_background: bool,
    /// One entry per open table cell: whether it is shaded (white text on it is visible).
    cells: Vec<bool>,
}

fn walk(
    xml: std::borrow::Cow<'_, str>,
    limits: &Limits,
    deadline: Instant,
) -> Result<String, ExtractError> {
    let mut reader = NsReader::from_str(&xml);
    let mut walker = Walker::default();
    let raw_budget = limits.max_chars.saturating_mul(RAW_TEXT_HEADROOM);
    let mut events = 0u32;
    loop {
        events = events.wrapping_add(1);
        if events.is_multiple_of(EVENTS_PER_DEADLINE_CHECK) && Instant::now() > deadline {
            return Err(ExtractError::TimedOut);
        }
        // The parser's message can quote the document (a tag name, text): log that it failed,
        // not what it said.
        let (namespace, event) = reader.read_resolved_event().map_err(|_| {
            tracing::debug!("DOCX XML error");
            BAD_XML
        })?;
        match event {
            Event::Start(element) => {
                let tag = classify(&namespace, &element);
                walker.open(tag, &element);
            }
            Event::Empty(element) => {
                let tag = classify(&namespace, &element);
                walker.open(tag, &element);
                walker.close();
            }
            Event::End(_) => walker.close(),
            Event::Text(text) => walker.text(&text.xml10_content()),
            Event::CData(data) => walker.text(&data.xml10_content()),
            Event::GeneralRef(reference) => match reference.resolve_char_ref() {
                Ok(Some(c)) => walker.text(c.encode_utf8(&mut [0; 4])),
                // Documents cannot declare entities of their own (Word refuses a DTD), so only
                // the five predefined ones mean anything.
                Ok(None) => {
                    if let Some(text) = resolve_predefined_entity(&reference) {
                        walker.text(text);
                    }
                }
                Err(_) => {}
            },
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
        if walker.chars > raw_budget {
            return Err(ExtractError::TooLong {
                limit_chars: limits.max_chars,
            });
        }
    }
    Ok(walker.out)
}

fn classify(namespace: &ResolveResult<'_>, element: &BytesStart<'_>) -> Tag {
    let ResolveResult::Bound(Namespace(uri)) = namespace else {
        return Tag::Other;
    };
    let local = element.local_name();
    if *uri == MARKUP_COMPATIBILITY_NS {
        return if local.as_ref() == "Fallback" {
            Tag::Fallback
        } else {
            Tag::Other
        };
    }
    if !WORDPROCESSING_NS.contains(uri) {
        return Tag::Other;
    }
    match local.as_ref() {
        "p" => Tag::Paragraph,
        "pPr" => Tag::ParagraphProps,
        "r" => Tag::Run,
        "rPr" => Tag::RunProps,
        "t" => Tag::Text,
        "tbl" => Tag::Table,
        "tr" => Tag::Row,
        "tc" => Tag::Cell,
        "tcPr" => Tag::CellProps,
        _ => Tag::Word,
    }
}

impl Walker {
    fn parent(&self) -> Option<Tag> {
        self.stack.last().copied()
    }

    fn grandparent(&self) -> Option<Tag> {
        self.stack.len().checked_sub(2).map(|i| self.stack[i])
    }

    fn open(&mut self, tag: Tag, element: &BytesStart<'_>) {
        let parent = self.parent();
        let grandparent = self.grandparent();
        self.stack.push(tag);
        if tag == Tag::Fallback {
            self.fallback_depth += 1;
        }
        if self.fallback_depth > 0 {
            return;
        }
        match tag {
            Tag::Paragraph => self.paragraph_on_background = false,
            Tag::Run => self.runs.push(Run::default()),
            Tag::Cell => self.cells.push(false),
            Tag::Word => {
                let local = element.local_name();
                let name = local.as_ref();
                match (parent, grandparent) {
                    // Direct run properties only: `w:rPrChange` holds the *old* properties.
                    (Some(Tag::RunProps), Some(Tag::Run)) => self.run_property(name, element),
                    (Some(Tag::ParagraphProps), _) if name == "shd" => {
                        self.paragraph_on_background = shading_is_visible(element);
                    }
                    (Some(Tag::CellProps), _) if name == "shd" => {
                        if let Some(cell) = self.cells.last_mut() {
                            *cell = shading_is_visible(element);
                        }
                    }
                    (Some(Tag::Run), _) => self.run_content(name),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn run_property(&mut self, name: &str, element: &BytesStart<'_>) {
        let Some(run) = self.runs.last_mut() else {
            return;
        };
        match name {
            "vanish" | "webHidden" | "specVanish" => run.hidden |= toggle_is_on(element),
            "color" => run.white = attribute(element, "val").is_some_and(|v| is_whitish(&v)),
            // Half-points: 2 is one point, unreadable on paper.
            "sz" => {
                run.hidden |= attribute(element, "val")
                    .and_then(|v| v.parse::<u32>().ok())
                    .is_some_and(|size| size <= 2);
            }
            "shd" => run.on_background |= shading_is_visible(element),
            "highlight" => {
                run.on_background |=
                    attribute(element, "val").is_some_and(|v| v != "none" && v != "white");
            }
            _ => {}
        }
    }

    fn run_content(&mut self, name: &str) {
        let Some(run) = self.runs.last_mut() else {
            return;
        };
        match name {
            "tab" | "ptab" => run.text.push('\t'),
            "br" | "cr" => run.text.push('\n'),
            "noBreakHyphen" => run.text.push('-'),
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if self.fallback_depth > 0 || self.parent() != Some(Tag::Text) {
            return;
        }
        if let Some(run) = self.runs.last_mut() {
            run.text.push_str(text);
        }
    }

    fn close(&mut self) {
        let Some(tag) = self.stack.pop() else {
            return;
        };
        if tag == Tag::Fallback {
            self.fallback_depth = self.fallback_depth.saturating_sub(1);
            return;
        }
        if self.fallback_depth > 0 {
            return;
        }
        match tag {
            Tag::Run => {
                if let Some(run) = self.runs.pop() {
                    let on_background = run.on_background
                        || self.paragraph_on_background
                        || self.cells.last() == Some(&true);
                    let invisible = run.hidden || (run.white && !on_background);
                    if invisible {
                        tracing::debug!(
                            chars = run.text.chars().count(),
                            "Dropped a hidden DOCX run"
                        );
                    } else {
                        self.push(&run.text);
                    }
                }
            }
            // Paragraphs inside a table cell stay on the cell's line.
            Tag::Paragraph => self.push(if self.cells.is_empty() { "\n" } else { " " }),
            Tag::Cell => {
                self.cells.pop();
                let trimmed = self.out.trim_end_matches([' ', '\t']).len();
                self.out.truncate(trimmed);
                self.push(" | ");
            }
            Tag::Row => {
                let trimmed = self.out.trim_end_matches([' ', '|']).len();
                self.out.truncate(trimmed);
                self.push("\n");
            }
            Tag::Table => self.push("\n"),
            _ => {}
        }
    }

    fn push(&mut self, text: &str) {
        self.chars += text.chars().count();
        self.out.push_str(text);
    }
}

fn attribute(element: &BytesStart<'_>, name: &str) -> Option<String> {
    element
        .attributes()
        .flatten()
        .find(|attribute| attribute.key.local_name().as_ref() == name)
        .map(|attribute| attribute.value.into_owned())
}

/// `<w:vanish/>` is on; `w:val="false"`, `"0"` or `"off"` turns it off.
fn toggle_is_on(element: &BytesStart<'_>) -> bool {
    !matches!(
        attribute(element, "val").as_deref(),
        Some("false" | "0" | "off")
    )
}

/// White or nearly so ("FFFFFF", "FEFEFE"): invisible on a white page.
fn is_whitish(value: &str) -> bool {
    value.len() == 6
        && (0..3).all(|i| {
            value
                .get(2 * i..2 * i + 2)
                .and_then(|channel| u8::from_str_radix(channel, 16).ok())
                .is_some_and(|channel| channel >= 0xF0)
        })
}

/// Whether a `w:shd` element paints a background that white text would stand out on.
fn shading_is_visible(element: &BytesStart<'_>) -> bool {
    let colour = if attribute(element, "val").as_deref() == Some("solid") {
        attribute(element, "color")
    } else {
        attribute(element, "fill")
    };
    colour.is_some_and(|c| !c.eq_ignore_ascii_case("auto") && !is_whitish(&c))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn body(inner: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"><w:body>{inner}</w:body></w:document>"#
        )
    }

    fn text_of(inner: &str) -> String {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        walk(body(inner).into(), &Limits::default(), deadline).unwrap()
    }

    #[test]
    fn paragraphs_tabs_and_breaks() {
        let xml = r#"<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t>Rust</w:t><w:tab/><w:t>2019</w:t><w:br/><w:t xml:space="preserve">Go </w:t></w:r><w:r><w:t>2021</w:t></w:r></w:p><w:p><w:r><w:t>Next</w:t></w:r></w:p>"#;
        assert_eq!(text_of(xml), "Rust\t2019\nGo 2021\nNext\n");
    }

    #[test]
    fn entities_and_character_references_are_resolved() {
        let xml = r#"<w:p><w:r><w:t>R&amp;D &lt;team&gt; &quot;lead&quot; &apos;24 &#233;t&#xE9; &unknown;</w:t></w:r></w:p>"#;
        assert_eq!(text_of(xml), "R&D <team> \"lead\" '24 été \n");
    }

    #[test]
    fn hidden_white_and_tiny_runs_are_dropped() {
        let xml = r#"<w:p>
            <w:r><w:t xml:space="preserve">Visible </w:t></w:r>
            <w:r><w:rPr><w:vanish/></w:rPr><w:t>HIDDEN</w:t></w:r>
            <w:r><w:rPr><w:vanish w:val="false"/></w:rPr><w:t>shown</w:t></w:r>
            <w:r><w:rPr><w:webHidden/></w:rPr><w:t>WEBHIDDEN</w:t></w:r>
            <w:r><w:rPr><w:color w:val="FFFFFF"/></w:rPr><w:t>WHITE</w:t></w:r>
            <w:r><w:rPr><w:color w:val="fefefe"/></w:rPr><w:t>NEARWHITE</w:t></w:r>
            <w:r><w:rPr><w:sz w:val="2"/></w:rPr><w:t>TINY</w:t></w:r>
            <w:r><w:rPr><w:color w:val="FF0000"/></w:rPr><w:t xml:space="preserve"> red</w:t></w:r>
        </w:p>"#;
        assert_eq!(text_of(xml), "Visible shown red\n");
    }

    #[test]
    fn white_text_on_a_dark_background_is_kept() {
        let xml = r#"<w:p><w:pPr><w:shd w:val="clear" w:color="auto" w:fill="1F3864"/></w:pPr><w:r><w:rPr><w:color w:val="FFFFFF"/></w:rPr><w:t>Banner</w:t></w:r></w:p>
            <w:p><w:r><w:rPr><w:color w:val="FFFFFF"/><w:highlight w:val="black"/></w:rPr><w:t>Marked</w:t></w:r></w:p>
            <w:p><w:pPr><w:shd w:val="clear" w:fill="FFFFFF"/></w:pPr><w:r><w:rPr><w:color w:val="FFFFFF"/></w:rPr><w:t>Sneaky</w:t></w:r></w:p>"#;
        assert_eq!(text_of(xml), "Banner\nMarked\n\n");
    }

    #[test]
    fn old_properties_of_a_formatting_change_do_not_hide_text() {
        let xml = r#"<w:p><w:r><w:rPr><w:b/><w:rPrChange w:id="1"><w:rPr><w:vanish/></w:rPr></w:rPrChange></w:rPr><w:t>Kept</w:t></w:r></w:p>"#;
        assert_eq!(text_of(xml), "Kept\n");
    }

    #[test]
    fn deleted_text_field_codes_and_fallbacks_are_skipped() {
        let xml = r#"<w:p><w:del><w:r><w:delText>old</w:delText></w:r></w:del><w:ins><w:r><w:t>new</w:t></w:r></w:ins><w:r><w:instrText>HYPERLINK "x"</w:instrText></w:r></w:p>
            <w:p><w:r><mc:AlternateContent><mc:Choice Requires="wps"><w:txbxContent><w:p><w:r><w:t>Box</w:t></w:r></w:p></w:txbxContent></mc:Choice><mc:Fallback><w:txbxContent><w:p><w:r><w:t>Box</w:t></w:r></w:p></w:txbxContent></mc:Fallback></mc:AlternateContent></w:r></w:p>"#;
        assert_eq!(text_of(xml), "new\nBox\n\n");
    }

    #[test]
    fn table_cells_are_separated_and_rows_are_lines() {
        let xml = r#"<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Rust</w:t></w:r></w:p><w:p><w:r><w:t>expert</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>8 years</w:t></w:r></w:p></w:tc></w:tr><w:tr><w:tc><w:p><w:r><w:t>Go</w:t></w:r></w:p></w:tc><w:tc><w:p/></w:tc></w:tr></w:tbl><w:p><w:r><w:t>After</w:t></w:r></w:p>"#;
        assert_eq!(text_of(xml), "Rust expert | 8 years\nGo\n\nAfter\n");
    }

    #[test]
    fn malformed_xml_is_unreadable() {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let result = walk(
            body("<w:p><w:r><w:t>oops</w:r></w:p>").into(),
            &Limits::default(),
            deadline,
        );
        assert_eq!(result, Err(BAD_XML));
    }

    #[test]
    fn whitish_colours() {
        assert!(is_whitish("FFFFFF"));
        assert!(is_whitish("f0f5ff"));
        assert!(!is_whitish("EFFFFF"));
        assert!(!is_whitish("auto"));
        assert!(!is_whitish("FFFFF"));
    }
}
