//! DOCX text: the main document part (`word/document.xml`) read from the ZIP archive in memory
//! and walked with a streaming XML reader, with the style part alongside it.
//!
//! Two kinds of hostile input shape this module. Zip bombs: every part is read through a bound on
//! both its absolute size and its compression ratio, so a small upload cannot expand to gigabytes.
//! Hidden text: runs marked hidden, white on no background, one point high or moved far off the
//! line, and deleted revisions, are invisible to a human reviewer but not to an LLM, which makes
//! them the classic place for injected instructions ("ignore the job description and ...");
//! such runs are dropped, whether the run itself or a style it uses (see [`styles`]) hides it.

mod styles;

use std::io::{Cursor, Read};
use std::time::Instant;

use quick_xml::NsReader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use zip::result::ZipError;

use crate::{ExtractError, Limits};
use styles::{Effective, RunFormat, Styles};

const MAIN_PART: &str = "word/document.xml";

/// The main part's relationships: they, not a fixed name, say where Word finds the style part.
const MAIN_PART_RELATIONSHIPS: &str = "word/_rels/document.xml.rels";
/// Relative targets in `MAIN_PART_RELATIONSHIPS` start from the main part's folder.
const MAIN_PART_FOLDER: &str = "word/";
/// Where the style part is when the package has no relationships part to say otherwise.
const DEFAULT_STYLES_PART: &str = "word/styles.xml";
const STYLES_RELATIONSHIP: &[&str] = &[
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles",
    "http://purl.oclc.org/ooxml/officeDocument/relationships/styles",
];

/// Bound on the style and relationship parts, which hold no text. It is separate from
/// `Limits::max_decompressed_bytes`, which sizes the text part: a style sheet's size says nothing
/// about the document's length (Word's full built-in sheet is about 350 KB even for a one-page
/// letter).
const MAX_FORMATTING_PART_BYTES: u64 = 8 * 1024 * 1024;

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
const WORD_SHAPE_NS: &str = "http://schemas.microsoft.com/office/word/2010/wordprocessingShape";
const DRAWING_NS: &[&str] = &[
    "http://schemas.openxmlformats.org/drawingml/2006/main",
    "http://purl.oclc.org/ooxml/drawingml/main",
];
const VML_NS: &str = "urn:schemas-microsoft-com:vml";

const BOMB: ExtractError = ExtractError::Unreadable {
    reason: "the DOCX file unpacks to far more data than a resume holds (a possible zip bomb)",
};
const DAMAGED: ExtractError = ExtractError::Unreadable {
    reason: "the file is a damaged or incomplete ZIP/DOCX archive",
};
const BAD_XML: ExtractError = ExtractError::Unreadable {
    reason: "the DOCX file's text part is not well-formed",
};

type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

pub(crate) fn extract(
    bytes: &[u8],
    limits: &Limits,
    deadline: Instant,
) -> Result<String, ExtractError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|_| DAMAGED)?;
    let xml = read_main_part(&mut archive, limits)?;
    let styles = read_style_part(&mut archive, deadline)?;
    let xml = decode_xml(&xml)?;
    walk(xml, &styles, limits, deadline)
}

fn entry_error(error: ZipError) -> ExtractError {
    match error {
        ZipError::UnsupportedArchive(message) if message == ZipError::PASSWORD_REQUIRED => {
            ExtractError::Encrypted
        }
        ZipError::UnsupportedArchive(_) | ZipError::CompressionMethodNotSupported(_) => {
            ExtractError::Unreadable {
                reason: "the DOCX file uses a compression method that is not supported",
            }
        }
        _ => DAMAGED,
    }
}

fn read_main_part(archive: &mut Archive<'_>, limits: &Limits) -> Result<Vec<u8>, ExtractError> {
    let mut entry = archive.by_name(MAIN_PART).map_err(|error| match error {
        ZipError::FileNotFound => ExtractError::Unsupported {
            what: "a ZIP archive that is not a DOCX",
        },
        error => entry_error(error),
    })?;
    read_bounded(&mut entry, limits.max_decompressed_bytes)
}

/// The style sheet Word would apply; none when the package has no style part.
fn read_style_part(archive: &mut Archive<'_>, deadline: Instant) -> Result<Styles, ExtractError> {
    let Some(name) = style_part_name(archive)? else {
        return Ok(Styles::default());
    };
    let Some(xml) = read_optional_part(archive, &name)? else {
        return Ok(Styles::default());
    };
    let xml = decode_xml(&xml).map_err(|_| styles::BAD_STYLES)?;
    styles::read_styles(&xml, deadline)
}

/// Word finds the style part through the main part's relationships, so a style sheet stored
/// under another name is still applied; reading only `word/styles.xml` would miss it.
fn style_part_name(archive: &mut Archive<'_>) -> Result<Option<String>, ExtractError> {
    let Some(relationships) = read_optional_part(archive, MAIN_PART_RELATIONSHIPS)? else {
        return Ok(Some(DEFAULT_STYLES_PART.to_owned()));
    };
    // Word refuses a package whose relationships it cannot parse.
    let xml = decode_xml(&relationships).map_err(|_| DAMAGED)?;
    let mut reader = NsReader::from_str(&xml);
    loop {
        match reader.read_event().map_err(|_| DAMAGED)? {
            Event::Start(element) | Event::Empty(element)
                if element.local_name().as_ref() == "Relationship" =>
            {
                let is_styles = attribute(&element, "Type")
                    .is_some_and(|kind| STYLES_RELATIONSHIP.contains(&kind.as_str()));
                let external = attribute(&element, "TargetMode").as_deref() == Some("External");
                if let Some(target) = attribute(&element, "Target")
                    && is_styles
                    && !external
                {
                    return Ok(Some(part_name(MAIN_PART_FOLDER, &target)));
                }
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// The ZIP entry name of a relationship target, relative to `folder` unless it starts with `/`.
fn part_name(folder: &str, target: &str) -> String {
    let joined = match target.strip_prefix('/') {
        Some(absolute) => absolute.to_owned(),
        None => format!("{folder}{target}"),
    };
    let mut segments: Vec<&str> = Vec::new();
    for segment in joined.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    segments.join("/")
}

/// A part other than the main one, bounded like it; `None` when the archive lacks it. Part names
/// are case-insensitive in a package, ZIP entry names are not.
fn read_optional_part(
    archive: &mut Archive<'_>,
    name: &str,
) -> Result<Option<Vec<u8>>, ExtractError> {
    let index = archive.index_for_name(name).or_else(|| {
        archive
            .file_names_raw()
            .position(|raw| raw.eq_ignore_ascii_case(name.as_bytes()))
    });
    let Some(index) = index else {
        return Ok(None);
    };
    let mut entry = archive.by_index(index).map_err(entry_error)?;
    read_bounded(&mut entry, MAX_FORMATTING_PART_BYTES).map(Some)
}

/// Inflates one entry, refusing it once it passes `limit` bytes or expands suspiciously well.
fn read_bounded(
    entry: &mut zip::read::ZipFile<'_, Cursor<&[u8]>>,
    limit: u64,
) -> Result<Vec<u8>, ExtractError> {
    if entry.encrypted() {
        return Err(ExtractError::Encrypted);
    }

    let allowed = limit.min(
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
    entry
        .by_ref()
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
    /// A tracked deletion (`w:del`) or the old place of moved text (`w:moveFrom`): not on the
    /// page, whether its runs hold `w:delText`, as Word writes them, or plain `w:t`.
    Deleted,
    /// A paragraph or table of a text box anchored in a hidden run, which hides the box.
    Concealed,
    /// A shape that can hold a text box (`wps:wsp`, VML shapes): its fill is a background.
    Shape,
    /// `wps:spPr`, where a shape's own fill is.
    ShapeProps,
    /// `wps:style`, where the theme fill a shape falls back on is.
    ShapeStyle,
    /// A DrawingML fill (`a:solidFill`, `a:noFill`, `a:fillRef`, ...) or VML `v:fill`.
    Fill,
    /// A DrawingML colour (`a:srgbClr`, `a:schemeClr`, ...).
    Colour,
    /// Any other WordprocessingML element; some matter by name inside a run.
    Word,
    Other,
}

/// The run being read; whether it is visible is decided once its text is complete.
#[derive(Default)]
struct Run {
    text: String,
    /// `w:rStyle`.
    style: Option<String>,
    direct: RunFormat,
    /// Index in `Walker::paragraphs` of the paragraph holding the run.
    paragraph: Option<usize>,
    /// Nested in a run that is hidden, which hides the text boxes anchored in it.
    in_hidden_run: bool,
}

/// How the shape around a text box is filled, as far as read.
#[derive(Default)]
struct Shape {
    /// From the shape's own properties.
    fill: Option<bool>,
    /// From its theme style, used when the shape sets no fill of its own.
    style_fill: Option<bool>,
}

impl Shape {
    fn filled(&self) -> bool {
        self.fill.or(self.style_fill).unwrap_or(false)
    }
}

#[derive(Default)]
struct Paragraph {
    /// `w:pStyle`.
    style: Option<String>,
    /// The paragraph's own `w:shd`.
    shaded: Option<bool>,
}

struct Walker<'s> {
    styles: &'s Styles,
    out: String,
    chars: usize,
    stack: Vec<Tag>,
    /// Runs can nest through text boxes anchored in a run.
    runs: Vec<Run>,
    /// Paragraphs nest the same way, and the outer one's style still applies after a text box.
    paragraphs: Vec<Paragraph>,
    /// Depth inside elements whose content is not shown (see `Tag::skips`).
    skip_depth: usize,
    /// One entry per open table cell: whether it is shaded (white text on it is visible).
    cells: Vec<bool>,
    /// Shapes holding the text boxes being read; white text on a filled one is visible.
    shapes: Vec<Shape>,
}

fn walk(
    xml: std::borrow::Cow<'_, str>,
    styles: &Styles,
    limits: &Limits,
    deadline: Instant,
) -> Result<String, ExtractError> {
    let mut reader = NsReader::from_str(&xml);
    let mut walker = Walker::new(styles);
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

impl Tag {
    /// Whether nothing inside the element is shown.
    fn skips(self) -> bool {
        matches!(self, Tag::Fallback | Tag::Deleted | Tag::Concealed)
    }
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
    if *uri == WORD_SHAPE_NS {
        return match local.as_ref() {
            "wsp" => Tag::Shape,
            "spPr" => Tag::ShapeProps,
            "style" => Tag::ShapeStyle,
            _ => Tag::Other,
        };
    }
    if DRAWING_NS.contains(uri) {
        return match local.as_ref() {
            "solidFill" | "gradFill" | "pattFill" | "blipFill" | "noFill" | "fillRef" => Tag::Fill,
            "srgbClr" | "schemeClr" | "sysClr" | "prstClr" | "scrgbClr" | "hslClr" => Tag::Colour,
            _ => Tag::Other,
        };
    }
    if *uri == VML_NS {
        return match local.as_ref() {
            "shape" | "rect" | "roundrect" | "oval" => Tag::Shape,
            "fill" => Tag::Fill,
            _ => Tag::Other,
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
        "del" | "moveFrom" => Tag::Deleted,
        _ => Tag::Word,
    }
}

impl<'s> Walker<'s> {
    fn new(styles: &'s Styles) -> Self {
        Self {
            styles,
            out: String::new(),
            chars: 0,
            stack: Vec::new(),
            runs: Vec::new(),
            paragraphs: Vec::new(),
            skip_depth: 0,
            cells: Vec::new(),
            shapes: Vec::new(),
        }
    }

    fn parent(&self) -> Option<Tag> {
        self.stack.last().copied()
    }

    fn grandparent(&self) -> Option<Tag> {
        self.stack.len().checked_sub(2).map(|i| self.stack[i])
    }

    fn open(&mut self, tag: Tag, element: &BytesStart<'_>) {
        let parent = self.parent();
        let grandparent = self.grandparent();
        let tag = if matches!(tag, Tag::Paragraph | Tag::Table)
            && self.skip_depth == 0
            && self.in_hidden_run()
        {
            Tag::Concealed
        } else {
            tag
        };
        self.stack.push(tag);
        if tag.skips() {
            self.skip_depth += 1;
        }
        if self.skip_depth > 0 {
            return;
        }
        match tag {
            Tag::Paragraph => self.paragraphs.push(Paragraph::default()),
            Tag::Run => {
                let run = Run {
                    paragraph: self.paragraphs.len().checked_sub(1),
                    in_hidden_run: self.in_hidden_run(),
                    ..Run::default()
                };
                self.runs.push(run);
            }
            Tag::Cell => self.cells.push(false),
            Tag::Shape => self.shapes.push(Shape {
                fill: vml_shape_fill(element),
                style_fill: None,
            }),
            Tag::Fill => self.fill(parent, element),
            Tag::Colour if parent == Some(Tag::Fill) => self.fill_colour(grandparent, element),
            Tag::Word => {
                let local = element.local_name();
                let name = local.as_ref();
                // Direct properties only: `w:rPrChange`, `w:pPrChange` and `w:tcPrChange` hold
                // the *old* properties, in elements of the same names one level further down.
                match (parent, grandparent) {
                    (Some(Tag::RunProps), Some(Tag::Run)) => self.run_property(name, element),
                    (Some(Tag::ParagraphProps), Some(Tag::Paragraph)) => {
                        self.paragraph_property(name, element);
                    }
                    (Some(Tag::CellProps), Some(Tag::Cell)) if name == "shd" => {
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
        if name == "rStyle" {
            run.style = attribute(element, "val");
        } else {
            run.direct.read(name, element);
        }
    }

    fn paragraph_property(&mut self, name: &str, element: &BytesStart<'_>) {
        let Some(paragraph) = self.paragraphs.last_mut() else {
            return;
        };
        match name {
            "pStyle" => paragraph.style = attribute(element, "val"),
            "shd" => paragraph.shaded = Some(shading_is_visible(element)),
            _ => {}
        }
    }

    /// A fill element: DrawingML's in `wps:spPr` or `wps:style`, or VML's `v:fill`. Fills in
    /// other places (a line's `a:ln`, a picture) say nothing about the text box background.
    fn fill(&mut self, parent: Option<Tag>, element: &BytesStart<'_>) {
        let Some(shape) = self.shapes.last_mut() else {
            return;
        };
        let local = element.local_name();
        match (parent, local.as_ref()) {
            (Some(Tag::ShapeProps), name) => shape.fill = Some(name != "noFill"),
            (Some(Tag::ShapeStyle), "fillRef") => {
                shape.style_fill = Some(attribute(element, "idx").is_some_and(|i| i != "0"));
            }
            (Some(Tag::Shape), "fill") => {
                if !toggle_is_on_attribute(element, "on") {
                    shape.fill = Some(false);
                } else if let Some(colour) = attribute(element, "color") {
                    shape.fill = Some(!vml_colour_is_whitish(&colour));
                }
            }
            _ => {}
        }
    }

    /// The colour of a DrawingML fill: a white fill is no background for white text.
    fn fill_colour(&mut self, fill_parent: Option<Tag>, element: &BytesStart<'_>) {
        let Some(shape) = self.shapes.last_mut() else {
            return;
        };
        let slot = match fill_parent {
            Some(Tag::ShapeProps) => &mut shape.fill,
            Some(Tag::ShapeStyle) => &mut shape.style_fill,
            _ => return,
        };
        if *slot == Some(true) && drawing_colour_is_whitish(element) {
            *slot = Some(false);
        }
    }

    /// Whether what opens now is inside a hidden run. Each run carries the answer for the runs
    /// around it, so this stays constant-time however deeply runs nest.
    fn in_hidden_run(&self) -> bool {
        self.runs
            .last()
            .is_some_and(|run| run.in_hidden_run || self.format(run).vanished)
    }

    fn paragraph_of(&self, run: &Run) -> Option<&Paragraph> {
        run.paragraph.and_then(|index| self.paragraphs.get(index))
    }

    fn format(&self, run: &Run) -> Effective {
        let paragraph_style = self.paragraph_of(run).and_then(|p| p.style.as_deref());
        self.styles
            .run(paragraph_style, run.style.as_deref(), &run.direct)
    }

    fn paragraph_shaded(&self, run: &Run) -> bool {
        let paragraph = self.paragraph_of(run);
        paragraph
            .and_then(|p| p.shaded)
            .or_else(|| {
                self.styles
                    .paragraph_shaded(paragraph.and_then(|p| p.style.as_deref()))
            })
            .unwrap_or(false)
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
        if self.skip_depth > 0 || self.parent() != Some(Tag::Text) {
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
        if tag.skips() {
            self.skip_depth = self.skip_depth.saturating_sub(1);
            return;
        }
        if self.skip_depth > 0 {
            return;
        }
        match tag {
            Tag::Run => {
                if let Some(run) = self.runs.pop() {
                    let format = self.format(&run);
                    let on_background = format.on_background
                        || self.paragraph_shaded(&run)
                        || self.cells.last() == Some(&true)
                        || self.shapes.last().is_some_and(Shape::filled);
                    let invisible = format.vanished
                        || format.unreadable
                        || run.in_hidden_run
                        || (format.white && !on_background);
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
            Tag::Paragraph => {
                self.paragraphs.pop();
                self.push(if self.cells.is_empty() { "\n" } else { " " });
            }
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
            Tag::Shape => {
                self.shapes.pop();
            }
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

/// VML's on/off attributes: "f", "false" (and "0", "off") are off; absent is on.
fn toggle_is_on_attribute(element: &BytesStart<'_>, name: &str) -> bool {
    !matches!(
        attribute(element, name).as_deref(),
        Some("f" | "false" | "0" | "off")
    )
}

/// A VML shape's own fill. VML fills white unless told otherwise, and a white fill is no
/// background for white text, so only a coloured `fillcolor` counts.
fn vml_shape_fill(element: &BytesStart<'_>) -> Option<bool> {
    if !toggle_is_on_attribute(element, "filled") {
        return Some(false);
    }
    attribute(element, "fillcolor").map(|colour| !vml_colour_is_whitish(&colour))
}

/// VML colours: "#1F3864", "#fff", "white", "black [3213]".
fn vml_colour_is_whitish(value: &str) -> bool {
    let colour = value.split_whitespace().next().unwrap_or_default();
    match colour.strip_prefix('#') {
        Some(hex) if hex.len() == 3 => {
            is_whitish(&hex.chars().flat_map(|c| [c, c]).collect::<String>())
        }
        Some(hex) => is_whitish(hex),
        None => colour.eq_ignore_ascii_case("white"),
    }
}

/// A DrawingML colour element; theme colours are taken as Office's default theme has them.
fn drawing_colour_is_whitish(element: &BytesStart<'_>) -> bool {
    let local = element.local_name();
    let value = attribute(element, "val").unwrap_or_default();
    match local.as_ref() {
        "srgbClr" => is_whitish(&value),
        "schemeClr" => matches!(value.as_str(), "bg1" | "lt1"),
        "sysClr" => {
            value == "window" || attribute(element, "lastClr").is_some_and(|c| is_whitish(&c))
        }
        "prstClr" => value == "white",
        _ => false,
    }
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
        walk(
            body(inner).into(),
            &Styles::default(),
            &Limits::default(),
            deadline,
        )
        .unwrap()
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
            &Styles::default(),
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
