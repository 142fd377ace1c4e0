//! A minimal PDF writer for text documents: the `examples/resume.pdf` fixture is generated from
//! `examples/resume.md` with it, so the upload path is exercised with a PDF that carries real,
//! extractable text and whose source anyone can read and edit.
//!
//! Scope is deliberately small: the Markdown a one-page resume uses (`#`/`##`/`###` headings,
//! paragraphs, `-` lists, `---` rules, `**bold**`, links and code spans shown as plain text), set in
//! the standard Helvetica and Helvetica-Bold fonts with WinAnsiEncoding, so Western European
//! letters ("Zürich") render and extract without embedding a font. Characters outside that
//! encoding become `?`. The output is deterministic (no dates, no random ids), so regenerating
//! the fixture changes it only when the source changes.

use std::fmt::Write as _;

/// Metadata written to the document's Info dictionary.
#[derive(Debug, Clone, Copy)]
pub struct DocumentInfo<'a> {
    pub title: &'a str,
    pub author: &'a str,
    pub creator: &'a str,
}

/// A4 in points.
const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const TEXT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;
/// Horizontal room taken by a list marker, and by each level of nesting.
const BULLET_INDENT: f32 = 12.0;

/// Renders the example resume: the title and author come from its `# Name` heading.
pub fn resume_to_pdf(markdown: &str) -> anyhow::Result<Vec<u8>> {
    let name = markdown
        .lines()
        .find_map(|line| line.strip_prefix("# "))
        .map(str::trim)
        .ok_or_else(|| anyhow::anyhow!("the resume needs a `# Name` heading"))?;
    let title = format!("{name} - Resume");
    Ok(markdown_to_pdf(
        markdown,
        &DocumentInfo {
            title: &title,
            author: name,
            creator: "letterbox-examples",
        },
    ))
}

/// Renders Markdown as a PDF file.
pub fn markdown_to_pdf(markdown: &str, info: &DocumentInfo<'_>) -> Vec<u8> {
    let pages = layout(&parse(markdown));
    serialize(&pages, info)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource(self) -> &'static str {
        match self {
            Self::Regular => "F1",
            Self::Bold => "F2",
        }
    }

    fn base_font(self) -> &'static str {
        match self {
            Self::Regular => "Helvetica",
            Self::Bold => "Helvetica-Bold",
        }
    }

    fn widths(self) -> &'static [u16; 224] {
        match self {
            Self::Regular => &HELVETICA_WIDTHS,
            Self::Bold => &HELVETICA_BOLD_WIDTHS,
        }
    }

    /// Width of `text` at `size` points, from the font's metrics, so wrapping matches rendering.
    fn width(self, text: &str, size: f32) -> f32 {
        let units: u32 = text
            .chars()
            .map(|c| u32::from(self.widths()[usize::from(win_ansi(c) - 32)]))
            .sum();
        units as f32 * size / 1000.0
    }
}

/// A run of text in one font.
#[derive(Debug, Clone, PartialEq)]
struct Span {
    font: Font,
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Block {
    Heading {
        level: u8,
        spans: Vec<Span>,
    },
    /// Hard line breaks inside a paragraph separate its lines.
    Paragraph(Vec<Vec<Span>>),
    Bullet {
        depth: u8,
        spans: Vec<Span>,
    },
    Rule,
}

fn parse(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    // Text lines waiting to become a paragraph; joined with a space unless a hard break ends one.
    let mut paragraph: Vec<String> = vec![];
    let mut joining = false;

    let flush = |paragraph: &mut Vec<String>, blocks: &mut Vec<Block>| {
        if !paragraph.is_empty() {
            blocks.push(Block::Paragraph(
                paragraph.drain(..).map(|line| inline(&line)).collect(),
            ));
        }
    };

    for raw in markdown.lines() {
        let line = raw.trim();
        let indent = raw.len() - raw.trim_start().len();
        if line.is_empty() {
            flush(&mut paragraph, &mut blocks);
            joining = false;
            continue;
        }
        if let Some((level, text)) = heading(line) {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Heading {
                level,
                spans: inline(text),
            });
            joining = false;
        } else if line.len() >= 3
            && (line.chars().all(|c| c == '-') || line.chars().all(|c| c == '*'))
        {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Rule);
            joining = false;
        } else if let Some(text) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
            flush(&mut paragraph, &mut blocks);
            let depth = u8::try_from(indent / 2).unwrap_or(u8::MAX);
            blocks.push(Block::Bullet {
                depth,
                spans: inline(text),
            });
            joining = false;
        } else if let (Some(Block::Bullet { spans, .. }), true) =
            (blocks.last_mut(), indent > 0 && paragraph.is_empty())
        {
            // An indented line right after a list item continues that item.
            spans.push(Span {
                font: Font::Regular,
                text: " ".to_owned(),
            });
            spans.extend(inline(line));
        } else {
            let hard_break = raw.ends_with("  ") || line.ends_with('\\');
            let text = line.trim_end_matches('\\').trim_end();
            match paragraph.last_mut() {
                Some(last) if joining => {
                    last.push(' ');
                    last.push_str(text);
                }
                _ => paragraph.push(text.to_owned()),
            }
            joining = !hard_break;
        }
    }
    flush(&mut paragraph, &mut blocks);
    blocks
}

fn heading(line: &str) -> Option<(u8, &str)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    let text = line[level..].strip_prefix(' ')?;
    (1..=6)
        .contains(&level)
        .then_some((level as u8, text.trim()))
}

/// `**bold**` switches fonts; links keep their text; code spans, `*emphasis*` and escapes lose
/// their marks.
fn inline(text: &str) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut font = Font::Regular;
    let mut current = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("**") {
            if !current.is_empty() {
                spans.push(Span {
                    font,
                    text: std::mem::take(&mut current),
                });
            }
            font = if font == Font::Bold {
                Font::Regular
            } else {
                Font::Bold
            };
            rest = after;
            continue;
        }
        if c == '['
            && let Some((label, after)) = link(rest)
        {
            current.push_str(label);
            rest = after;
            continue;
        }
        if c == '\\'
            && let Some(escaped) = rest[1..].chars().next().filter(char::is_ascii_punctuation)
        {
            current.push(escaped);
            rest = &rest[1 + escaped.len_utf8()..];
            continue;
        }
        // Code spans and single-star emphasis lose their marks; there is no italic font here.
        if c != '`' && c != '*' {
            current.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    if !current.is_empty() {
        spans.push(Span {
            font,
            text: current,
        });
    }
    spans
}

/// `[label](target)` at the start of `text`: the label and what follows the link.
fn link(text: &str) -> Option<(&str, &str)> {
    let close = text.find("](")?;
    let end = close + text[close..].find(')')?;
    Some((&text[1..close], &text[end + 1..]))
}

/// Everything drawn on a page.
#[derive(Debug, Default)]
struct Page {
    marks: Vec<Mark>,
}

#[derive(Debug)]
enum Mark {
    /// One line of text; pieces follow each other, each in its own font.
    Text {
        x: f32,
        y: f32,
        size: f32,
        pieces: Vec<(Font, String)>,
    },
    Rule {
        y: f32,
    },
}

struct Style {
    size: f32,
    leading: f32,
    space_before: f32,
    space_after: f32,
}

const BODY: Style = Style {
    size: 10.0,
    leading: 13.5,
    space_before: 0.0,
    space_after: 5.0,
};

fn heading_style(level: u8) -> Style {
    match level {
        1 => Style {
            size: 20.0,
            leading: 24.0,
            space_before: 0.0,
            space_after: 4.0,
        },
        2 => Style {
            size: 12.5,
            leading: 16.0,
            space_before: 10.0,
            space_after: 2.0,
        },
        _ => Style {
            size: 10.5,
            leading: 14.0,
            space_before: 6.0,
            space_after: 1.0,
        },
    }
}

/// Places blocks top to bottom, starting a new page when the next line would cross the margin.
struct Cursor {
    pages: Vec<Page>,
    y: f32,
}

impl Cursor {
    fn new() -> Self {
        Self {
            pages: vec![Page::default()],
            y: PAGE_HEIGHT - MARGIN,
        }
    }

    fn at_page_top(&self) -> bool {
        self.y >= PAGE_HEIGHT - MARGIN
    }

    fn space(&mut self, points: f32) {
        // Space never carries over to a new page.
        if !self.at_page_top() {
            self.y -= points;
        }
    }

    /// The baseline for a line of `leading` height, on a new page if needed.
    fn next_line(&mut self, leading: f32) -> f32 {
        if self.y - leading < MARGIN {
            self.pages.push(Page::default());
            self.y = PAGE_HEIGHT - MARGIN;
        }
        self.y -= leading;
        self.y
    }

    fn draw(&mut self, mark: Mark) {
        if let Some(page) = self.pages.last_mut() {
            page.marks.push(mark);
        }
    }
}

fn layout(blocks: &[Block]) -> Vec<Page> {
    let mut cursor = Cursor::new();
    for block in blocks {
        match block {
            Block::Heading { level, spans } => {
                let style = heading_style(*level);
                // Headings are bold whatever their inline marks say.
                let spans: Vec<Span> = spans
                    .iter()
                    .map(|s| Span {
                        font: Font::Bold,
                        text: s.text.clone(),
                    })
                    .collect();
                cursor.space(style.space_before);
                // Keep a section heading with at least two lines of what follows it.
                if cursor.y - style.leading - 2.0 * BODY.leading < MARGIN {
                    cursor.y = MARGIN;
                }
                place(&mut cursor, &spans, &style, MARGIN, MARGIN);
                if *level == 2 {
                    let y = cursor.y - 3.0;
                    cursor.draw(Mark::Rule { y });
                    cursor.y -= 3.0;
                }
                cursor.space(style.space_after);
            }
            Block::Paragraph(lines) => {
                for spans in lines {
                    place(&mut cursor, spans, &BODY, MARGIN, MARGIN);
                }
                cursor.space(BODY.space_after);
            }
            Block::Bullet { depth, spans } => {
                let x = MARGIN + f32::from(*depth) * BULLET_INDENT;
                let text_x = x + BULLET_INDENT;
                let first = place(&mut cursor, spans, &BODY, text_x, text_x);
                if let Some(y) = first {
                    cursor.draw(Mark::Text {
                        x,
                        y,
                        size: BODY.size,
                        pieces: vec![(Font::Regular, "\u{2022}".to_owned())],
                    });
                }
                cursor.space(1.5);
            }
            Block::Rule => {
                cursor.space(4.0);
                let y = cursor.next_line(4.0);
                cursor.draw(Mark::Rule { y });
                cursor.space(6.0);
            }
        }
    }
    cursor.pages
}

/// Wraps spans to the text width and draws them; returns the first line's baseline.
fn place(cursor: &mut Cursor, spans: &[Span], style: &Style, first_x: f32, x: f32) -> Option<f32> {
    let mut first_baseline = None;
    for (index, line) in wrap(spans, style.size, PAGE_WIDTH - MARGIN - x)
        .into_iter()
        .enumerate()
    {
        let y = cursor.next_line(style.leading);
        first_baseline.get_or_insert(y);
        let line_x = if index == 0 { first_x } else { x };
        cursor.draw(Mark::Text {
            x: line_x,
            y,
            size: style.size,
            pieces: line,
        });
    }
    first_baseline
}

/// Greedy word wrap. A space between words goes at the start of the next word's piece, in that
/// word's font; a word wider than the line gets a line of its own rather than being split.
fn wrap(spans: &[Span], size: f32, width: f32) -> Vec<Vec<(Font, String)>> {
    let words = spans.iter().flat_map(|span| {
        span.text
            .split_whitespace()
            .map(move |word| (span.font, word))
    });
    let mut lines: Vec<Vec<(Font, String)>> = Vec::new();
    let mut line: Vec<(Font, String)> = Vec::new();
    let mut used = 0.0;
    for (font, word) in words {
        let word_width = font.width(word, size);
        let space = font.width(" ", size);
        if !line.is_empty() && used + space + word_width > width {
            lines.push(std::mem::take(&mut line));
            used = 0.0;
        }
        let separator = if line.is_empty() { "" } else { " " };
        used += if line.is_empty() {
            word_width
        } else {
            space + word_width
        };
        match line.last_mut() {
            Some((last_font, text)) if *last_font == font => {
                text.push_str(separator);
                text.push_str(word);
            }
            _ => line.push((font, format!("{separator}{word}"))),
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The page's content stream.
fn content(page: &Page) -> String {
    let mut out = String::new();
    for mark in &page.marks {
        match mark {
            Mark::Text { x, y, size, pieces } => {
                let _ = write!(out, "BT {} {} Td", num(*x), num(*y));
                for (font, text) in pieces {
                    let _ = write!(
                        out,
                        " /{} {} Tf ({}) Tj",
                        font.resource(),
                        num(*size),
                        pdf_string(text)
                    );
                }
                out.push_str(" ET\n");
            }
            Mark::Rule { y } => {
                let (from, to, y) = (num(MARGIN), num(MARGIN + TEXT_WIDTH), num(*y));
                let _ = writeln!(out, "q 0.6 G 0.5 w {from} {y} m {to} {y} l S Q");
            }
        }
    }
    out
}

/// Objects are numbered: 1 catalog, 2 page tree, 3–4 fonts, 5 info, then a page and its content
/// stream for each page.
fn serialize(pages: &[Page], info: &DocumentInfo<'_>) -> Vec<u8> {
    const FIRST_PAGE: usize = 6;
    let page_ids: Vec<usize> = (0..pages.len())
        .map(|index| FIRST_PAGE + 2 * index)
        .collect();
    let kids: Vec<String> = page_ids.iter().map(|id| format!("{id} 0 R")).collect();

    let mut objects: Vec<String> = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        ),
        font_object(Font::Regular),
        font_object(Font::Bold),
        format!(
            "<< /Title ({}) /Author ({}) /Creator ({}) >>",
            pdf_string(info.title),
            pdf_string(info.author),
            pdf_string(info.creator)
        ),
    ];
    for (page, id) in pages.iter().zip(&page_ids) {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] \
             /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
            num(PAGE_WIDTH),
            num(PAGE_HEIGHT),
            id + 1
        ));
        let stream = content(page);
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ));
    }

    // The second line's high bytes tell transfer tools the file is binary.
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (index, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", index + 1).as_bytes());
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        // Each entry is exactly 20 bytes, line end included.
        let _ = writeln!(table, "{offset:010} 00000 n ");
    }
    let _ = write!(
        table,
        "trailer\n<< /Size {} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out.extend_from_slice(table.as_bytes());
    out
}

fn font_object(font: Font) -> String {
    let widths: Vec<String> = font.widths().iter().map(u16::to_string).collect();
    format!(
        "<< /Type /Font /Subtype /Type1 /BaseFont /{} /Encoding /WinAnsiEncoding \
         /FirstChar 32 /LastChar 255 /Widths [{}] >>",
        font.base_font(),
        widths.join(" ")
    )
}

/// A literal string body: WinAnsi bytes, with delimiters escaped and anything outside printable
/// ASCII written as an octal escape, so the file stays readable as text.
fn pdf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match win_ansi(c) {
            byte @ (b'(' | b')' | b'\\') => {
                out.push('\\');
                out.push(char::from(byte));
            }
            byte @ 32..=126 => out.push(char::from(byte)),
            byte => {
                let _ = write!(out, "\\{byte:03o}");
            }
        }
    }
    out
}

/// The WinAnsiEncoding byte for a character: Latin-1 for most, the Windows-1252 additions
/// (curly quotes, dashes, bullet, euro) in 0x80–0x9F, `?` for anything else. Never below 32.
fn win_ansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\t' | '\n' | '\r' => b' ',
        '\u{a0}'..='\u{ff}' => c as u8,
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8A,
        '‹' => 0x8B,
        'Œ' => 0x8C,
        'Ž' => 0x8E,
        '\u{2018}' => 0x91,
        '\u{2019}' => 0x92,
        '\u{201c}' => 0x93,
        '\u{201d}' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9A,
        '›' => 0x9B,
        'œ' => 0x9C,
        'ž' => 0x9E,
        'Ÿ' => 0x9F,
        _ => b'?',
    }
}

/// Coordinates with at most two decimals and no trailing zeros: compact and deterministic.
fn num(value: f32) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Glyph widths (1/1000 em) for WinAnsi codes 32–255, from Adobe's Helvetica metrics.
#[rustfmt::skip]
const HELVETICA_WIDTHS: [u16; 224] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, 350,
    556, 350, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,
    350, 222, 222, 333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 350, 500, 667,
    278, 333, 556, 556, 556, 556, 260, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    400, 584, 333, 333, 333, 556, 537, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    667, 667, 667, 667, 667, 667, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500,
];

/// Glyph widths (1/1000 em) for WinAnsi codes 32–255, from Adobe's Helvetica-Bold metrics.
#[rustfmt::skip]
const HELVETICA_BOLD_WIDTHS: [u16; 224] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, 350,
    556, 350, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,
    350, 278, 278, 500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 350, 500, 667,
    278, 333, 556, 556, 556, 556, 280, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    400, 584, 333, 333, 333, 611, 556, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    722, 722, 722, 722, 722, 722, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278,
    611, 611, 611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556,
];

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: DocumentInfo<'static> = DocumentInfo {
        title: "T",
        author: "A",
        creator: "test",
    };

    /// The file as text with the same byte offsets: non-ASCII bytes become `?`.
    fn text(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|&b| if b.is_ascii() { char::from(b) } else { '?' })
            .collect()
    }

    #[test]
    fn xref_offsets_point_at_their_objects() {
        let pdf = markdown_to_pdf("# Name\n\nSome text.\n\n- one\n- two\n", &INFO);
        let body = text(&pdf);
        let xref = body.rfind("\nxref\n").map(|i| i + 1).unwrap_or_default();
        let startxref: usize = body
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        assert_eq!(startxref, xref);
        let entries: Vec<&str> = body[xref..]
            .lines()
            .skip(3)
            .take_while(|line| line.ends_with(" n "))
            .collect();
        assert_eq!(entries.len(), 7);
        for (index, entry) in entries.iter().enumerate() {
            let offset: usize = entry[..10].parse().unwrap_or_default();
            assert!(
                pdf[offset..].starts_with(format!("{} 0 obj\n", index + 1).as_bytes()),
                "object {}",
                index + 1
            );
        }
        assert!(
            entries.iter().all(|entry| entry.len() == 19),
            "entries are 20 bytes with the newline"
        );
    }

    #[test]
    fn latin_letters_are_written_as_win_ansi_octal_escapes() {
        assert_eq!(
            pdf_string("Zürich (CH) \\ 50 €"),
            "Z\\374rich \\(CH\\) \\\\ 50 \\200"
        );
        assert_eq!(pdf_string("日本"), "??");
    }

    #[test]
    fn bold_marks_links_and_code_spans_become_plain_runs() {
        let spans = inline("**Lead** at [Acme](https://example.com) using `tokio`");
        assert_eq!(
            spans,
            [
                Span {
                    font: Font::Bold,
                    text: "Lead".to_owned()
                },
                Span {
                    font: Font::Regular,
                    text: " at Acme using tokio".to_owned()
                },
            ]
        );
    }

    #[test]
    fn wrapped_lines_fit_the_text_width() {
        let long = "word ".repeat(200);
        let lines = wrap(
            &[Span {
                font: Font::Regular,
                text: long,
            }],
            10.0,
            TEXT_WIDTH,
        );
        assert!(lines.len() > 5);
        for line in &lines {
            let width: f32 = line.iter().map(|(font, text)| font.width(text, 10.0)).sum();
            assert!(width <= TEXT_WIDTH, "{width}");
        }
    }

    #[test]
    fn long_documents_continue_on_new_pages() {
        // 40 one-line paragraphs fill an A4 page at these margins.
        let markdown = "A paragraph line.\n\n".repeat(60);
        let pdf = text(&markdown_to_pdf(&markdown, &INFO));
        assert!(pdf.contains("/Count 2 "));
    }

    #[test]
    fn output_is_deterministic() {
        let markdown = "# Name\n\n## Section\n\nText with **bold**.\n\n---\n";
        assert_eq!(
            markdown_to_pdf(markdown, &INFO),
            markdown_to_pdf(markdown, &INFO)
        );
    }

    #[test]
    fn markdown_blocks_are_recognised() {
        let blocks = parse(
            "# Title\nContact line  \nsecond line\n\n- item\n  continued\n\n---\n## Skills\n",
        );
        assert_eq!(blocks.len(), 5);
        assert!(matches!(&blocks[1], Block::Paragraph(lines) if lines.len() == 2));
        assert!(
            matches!(&blocks[2], Block::Bullet { depth: 0, spans } if spans.iter().map(|s| s.text.as_str()).collect::<String>() == "item continued")
        );
        assert_eq!(blocks[3], Block::Rule);
    }
}
