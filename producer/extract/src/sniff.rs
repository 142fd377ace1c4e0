//! Decides what an upload is from its bytes. File names and declared content types are chosen by
//! clients and often wrong ("resume.pdf" that is a Word file, a photo saved as ".docx"), so the
//! content alone decides which parser runs.

use std::io::Cursor;

use crate::{DocumentKind, ExtractError};

/// How far into the file a PDF header may sit; readers accept junk before `%PDF-`.
const PDF_HEADER_WINDOW: usize = 1024;

/// Text with more control characters than this share of its characters is binary data that
/// happens to be valid UTF-8.
const MAX_CONTROL_SHARE: f64 = 0.01;

/// What sniffing found; text is decoded once here and handed on.
pub(crate) enum Sniffed {
    Pdf,
    Docx,
    Text { kind: DocumentKind, text: String },
}

impl Sniffed {
    pub(crate) fn kind(&self) -> DocumentKind {
        match self {
            Self::Pdf => DocumentKind::Pdf,
            Self::Docx => DocumentKind::Docx,
            Self::Text { kind, .. } => *kind,
        }
    }
}

pub(crate) fn sniff_and_decode(bytes: &[u8]) -> Result<Sniffed, ExtractError> {
    let head = &bytes[..bytes.len().min(PDF_HEADER_WINDOW)];
    if contains(head, b"%PDF-") {
        return Ok(Sniffed::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return zip_kind(bytes);
    }
    if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Err(ole_kind(bytes));
    }
    if bytes.starts_with(b"{\\rtf") {
        return Err(ExtractError::Unsupported {
            what: "an RTF file",
        });
    }
    if let Some(what) = image_kind(bytes) {
        return Err(ExtractError::Unsupported { what });
    }
    if bytes.starts_with(b"%!PS") {
        return Err(ExtractError::Unsupported {
            what: "a PostScript file",
        });
    }
    let text = decode_text(bytes)?;
    let kind = if looks_like_markdown(&text) {
        DocumentKind::Markdown
    } else {
        DocumentKind::Text
    };
    Ok(Sniffed::Text { kind, text })
}

/// A DOCX is a ZIP archive holding `word/document.xml`; other Office and OpenDocument formats
/// are ZIP archives too and get a message that names them.
fn zip_kind(bytes: &[u8]) -> Result<Sniffed, ExtractError> {
    let archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|_| ExtractError::Unreadable {
            reason: "the file is a damaged or incomplete ZIP/DOCX archive",
        })?;
    let has = |name: &str| archive.index_for_name(name).is_some();
    if has("word/document.xml") {
        return Ok(Sniffed::Docx);
    }
    let what = if has("xl/workbook.xml") {
        "an Excel spreadsheet"
    } else if has("ppt/presentation.xml") {
        "a PowerPoint presentation"
    } else if has("mimetype") && has("content.xml") {
        "an OpenDocument file (save it as .docx or PDF)"
    } else {
        "a ZIP archive that is not a DOCX"
    };
    Err(ExtractError::Unsupported { what })
}

/// The OLE compound format holds legacy Office files, and also modern Office files that were
/// saved with a password: their encrypted package sits in a stream named "EncryptedPackage".
fn ole_kind(bytes: &[u8]) -> ExtractError {
    if contains(bytes, &utf16le(b"EncryptedPackage")) {
        ExtractError::Encrypted
    } else if contains(bytes, &utf16le(b"WordDocument")) {
        ExtractError::Unsupported {
            what: "a legacy Word .doc file (save it as .docx or PDF)",
        }
    } else {
        ExtractError::Unsupported {
            what: "a legacy Office file (.doc, .xls or .ppt)",
        }
    }
}

fn utf16le(ascii: &[u8]) -> Vec<u8> {
    ascii.iter().flat_map(|&b| [b, 0]).collect()
}

fn image_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("an image (PNG)")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("an image (JPEG)")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("an image (GIF)")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("an image (WebP)")
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some("an image (TIFF)")
    } else if bytes.len() >= 12
        && &bytes[4..8] == b"ftyp"
        && matches!(
            &bytes[8..12],
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"avif"
        )
    {
        // Phone cameras: the most common "resume" photo.
        Some("an image (HEIC/AVIF)")
    } else {
        None
    }
}

/// UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark. Without a BOM,
/// UTF-16 cannot be told apart from binary data reliably, and legacy 8-bit encodings cannot be
/// told apart from each other, so both are refused with a message rather than guessed.
fn decode_text(bytes: &[u8]) -> Result<String, ExtractError> {
    let text = if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        std::str::from_utf8(rest)
            .map(str::to_owned)
            .map_err(|_| not_utf8(rest))?
    } else if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        decode_utf16(rest, u16::from_le_bytes)
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        decode_utf16(rest, u16::from_be_bytes)
    } else {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| not_utf8(bytes))?
    };
    if is_binary(&text) {
        return Err(ExtractError::Unsupported {
            what: "binary data",
        });
    }
    Ok(text)
}

fn decode_utf16(bytes: &[u8], from_bytes: fn([u8; 2]) -> u16) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|pair| from_bytes([pair[0], pair[1]]));
    // Lone surrogates become U+FFFD; the quality check refuses text with many of them.
    char::decode_utf16(units)
        .map(|unit| unit.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Invalid UTF-8 is either binary data or text in a legacy encoding (Windows-1252, Latin-1);
/// the second deserves a message that says how to fix it.
fn not_utf8(bytes: &[u8]) -> ExtractError {
    let controls = bytes
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C))
        .count();
    if controls == 0 {
        ExtractError::Unsupported {
            what: "text that is not UTF-8 encoded (save it as UTF-8)",
        }
    } else {
        ExtractError::Unsupported {
            what: "binary data",
        }
    }
}

fn is_binary(text: &str) -> bool {
    let mut total = 0usize;
    let mut controls = 0usize;
    for c in text.chars() {
        total += 1;
        if c == '\0' {
            return true;
        }
        if c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{0C}') {
            controls += 1;
        }
    }
    controls as f64 > MAX_CONTROL_SHARE * total as f64
}

/// Markdown signals, weighted so that the "- " bullets of an ordinary plain-text resume alone do
/// not make it Markdown. The kind only labels the text for the prompt; both are passed through.
fn looks_like_markdown(text: &str) -> bool {
    const THRESHOLD: usize = 2;
    let mut score = 0usize;
    let mut list_lines = 0usize;
    for line in text.lines().take(2000) {
        let line = head_of(line.trim_start(), 512);
        let hashes = line.bytes().take_while(|&b| b == b'#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            score += 2;
        }
        if line.starts_with("```") {
            score += 2;
        }
        if line.starts_with("- ") || line.starts_with("* ") || line.starts_with("+ ") {
            list_lines += 1;
        }
        score += markdown_links(line) + bold_spans(line);
        if score >= THRESHOLD {
            return true;
        }
    }
    score + usize::from(list_lines >= 2) >= THRESHOLD
}

/// Bounds the scanning work on pathological single-line files.
fn head_of(line: &str, max_bytes: usize) -> &str {
    if line.len() <= max_bytes {
        return line;
    }
    let mut end = max_bytes;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// Counts `[text](target)` links.
fn markdown_links(line: &str) -> usize {
    let mut count = 0;
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find("](") {
            let label = &rest[..close];
            let after = &rest[close + 2..];
            if !label.is_empty() && !label.contains('[') && after.contains(')') {
                count += 1;
            }
        }
    }
    count
}

/// Counts `**bold**` spans.
fn bold_spans(line: &str) -> usize {
    line.matches("**").count() / 2
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::sniff;

    #[test]
    fn pdf_header_may_follow_junk() {
        let mut bytes = vec![b' '; 600];
        bytes.extend_from_slice(b"%PDF-1.7\n");
        assert_eq!(sniff(&bytes), Ok(DocumentKind::Pdf));
        let mut late = vec![b'x'; 1100];
        late.extend_from_slice(b"%PDF-1.7\n");
        assert_eq!(sniff(&late), Ok(DocumentKind::Text));
    }

    #[test]
    fn images_and_legacy_formats_are_named() {
        let cases: [(&[u8], &str); 6] = [
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "an image (PNG)"),
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", "an image (JPEG)"),
            (b"GIF89a\x01\0\x01\0", "an image (GIF)"),
            (b"RIFF\x24\0\0\0WEBPVP8 ", "an image (WebP)"),
            (b"II*\0\x08\0\0\0", "an image (TIFF)"),
            (b"{\\rtf1\\ansi Hello}", "an RTF file"),
        ];
        for (bytes, what) in cases {
            assert_eq!(sniff(bytes), Err(ExtractError::Unsupported { what }));
        }
    }

    #[test]
    fn ole_container_is_a_legacy_doc_or_an_encrypted_docx() {
        let mut doc = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        doc.extend_from_slice(&[0; 504]);
        let mut encrypted = doc.clone();
        doc.extend_from_slice(&utf16le(b"WordDocument"));
        encrypted.extend_from_slice(&utf16le(b"EncryptedPackage"));
        assert_eq!(
            sniff(&doc),
            Err(ExtractError::Unsupported {
                what: "a legacy Word .doc file (save it as .docx or PDF)"
            })
        );
        assert_eq!(sniff(&encrypted), Err(ExtractError::Encrypted));
    }

    #[test]
    fn truncated_zip_is_unreadable() {
        assert_eq!(
            sniff(b"PK\x03\x04\x14\0\0\0\x08\0"),
            Err(ExtractError::Unreadable {
                reason: "the file is a damaged or incomplete ZIP/DOCX archive"
            })
        );
    }

    #[test]
    fn markdown_is_told_from_plain_text() {
        assert_eq!(
            sniff(b"# Jane Doe\n\nRust engineer"),
            Ok(DocumentKind::Markdown)
        );
        assert_eq!(
            sniff(b"Jane Doe\n**Rust** engineer, see [site](https://jane.example)"),
            Ok(DocumentKind::Markdown)
        );
        assert_eq!(
            sniff(b"Jane Doe\n- Rust\n- Go\n**Lead** engineer"),
            Ok(DocumentKind::Markdown)
        );
        // Bullets alone are what plain-text resumes use too.
        assert_eq!(
            sniff(b"Jane Doe\nSKILLS\n- Rust\n- Go\n"),
            Ok(DocumentKind::Text)
        );
        assert_eq!(sniff(b"C# developer, #1 in sales"), Ok(DocumentKind::Text));
    }

    #[test]
    fn utf8_bom_and_utf16_boms_are_decoded() {
        let Sniffed::Text { text, .. } = sniff_and_decode(b"\xEF\xBB\xBFCaf\xC3\xA9").unwrap()
        else {
            panic!("not text");
        };
        assert_eq!(text, "Café");

        let mut be = vec![0xFE, 0xFF];
        be.extend("Çelik".encode_utf16().flat_map(u16::to_be_bytes));
        let Sniffed::Text { text, .. } = sniff_and_decode(&be).unwrap() else {
            panic!("not text");
        };
        assert_eq!(text, "Çelik");
    }

    #[test]
    fn binary_and_legacy_encodings_are_refused() {
        assert_eq!(
            sniff(b"abc\0def"),
            Err(ExtractError::Unsupported {
                what: "binary data"
            })
        );
        assert_eq!(
            sniff(b"Caf\xE9 au lait"),
            Err(ExtractError::Unsupported {
                what: "text that is not UTF-8 encoded (save it as UTF-8)"
            })
        );
        assert_eq!(
            sniff(b"\x01\x02\x03\xFF\xFE\x00"),
            Err(ExtractError::Unsupported {
                what: "binary data"
            })
        );
    }
}
