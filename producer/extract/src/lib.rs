//! Document extraction for Letterbox: turns an uploaded resume or job description (PDF, DOCX,
//! Markdown or plain text) into clean, bounded text for the LLM prompt.
//!
//! Everything happens in memory: uploads hold personal data and never touch the disk. The format
//! is decided by content, not by file name. Limits on size, pages, decompressed bytes, characters
//! and time apply to every document, and a document that yields nothing usable (a scan, garbled
//! fonts, hidden text only) is refused with an [`ExtractError`] whose message tells the user
//! what to do, rather than sent to the LLM as an empty or noisy prompt.
//!
//! The producer calls [`extract_isolated`], which runs the parsers in a short-lived subprocess
//! (`letterbox-extract`, this crate's binary) with its own memory and CPU limits, so that a parser
//! panic, a stack overflow or a slow file costs one request, not the server. PDF nesting deep
//! enough to overflow a stack is also refused before parsing.

mod docx;
mod error;
mod isolate;
mod normalize;
mod pdf;
mod pdf_guard;
mod quality;
mod sniff;
mod wire;

use std::fmt;
use std::time::{Duration, Instant};

pub use error::ExtractError;
pub use isolate::{EXTRACTOR_ENV, extractor, run_subprocess};
pub use normalize::normalize;

/// Bounds applied to every document. The defaults suit resumes and job descriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest upload accepted, in bytes.
    pub max_bytes: usize,
    /// Longest text passed on, in characters after normalisation; bounds the prompt's cost.
    pub max_chars: usize,
    /// Most PDF pages read; a resume has a few, a 500-page manual is not one. More pages are
    /// refused as [`ExtractError::TooLong`].
    pub max_pages: usize,
    /// Most bytes a DOCX text part, or all compressed streams of a PDF together, may inflate to
    /// (decompression-bomb guard).
    pub max_decompressed_bytes: u64,
    /// Wall-clock budget of one extraction.
    pub timeout: Duration,
    /// Fewest letters that count as a document; below it the upload is treated as a scan.
    pub min_letters: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_chars: 100_000,
            max_pages: 50,
            max_decompressed_bytes: 50 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            min_letters: 40,
        }
    }
}

/// The formats Letterbox reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    Pdf,
    Docx,
    Markdown,
    Text,
}

impl DocumentKind {
    /// Stable lowercase name, for logs, metrics and API bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Docx => "docx",
            Self::Markdown => "markdown",
            Self::Text => "text",
        }
    }

    /// What a file name's extension claims, if it names one of the supported formats.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let (_, extension) = name.rsplit_once('.')?;
        match extension.to_ascii_lowercase().as_str() {
            "pdf" => Some(Self::Pdf),
            "docx" => Some(Self::Docx),
            "md" | "markdown" => Some(Self::Markdown),
            "txt" | "text" => Some(Self::Text),
            _ => None,
        }
    }

    /// What a `Content-Type` claims, if it names one of the supported formats.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let essence = media_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/pdf" => Some(Self::Pdf),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                Some(Self::Docx)
            }
            "text/markdown" => Some(Self::Markdown),
            "text/plain" => Some(Self::Text),
            _ => None,
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text ready for a prompt, with the format it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Extracted {
    pub kind: DocumentKind,
    pub text: String,
}

/// Resume text is personal data: `Debug` shows its size, never its content.
impl fmt::Debug for Extracted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extracted")
            .field("kind", &self.kind)
            .field("chars", &self.text.chars().count())
            .finish()
    }
}

/// Identifies a document by its content: `%PDF-` near the start, a ZIP archive holding
/// `word/document.xml`, or text in UTF-8 (or UTF-16 with a byte-order mark). Everything else,
/// including images, legacy Word files, RTF and other ZIP archives, is refused with a message that
/// names it.
pub fn sniff(bytes: &[u8]) -> Result<DocumentKind, ExtractError> {
    sniff::sniff_and_decode(bytes).map(|sniffed| sniffed.kind())
}

/// Extracts clean text from an uploaded document: size check, sniffing, per-format extraction,
/// normalisation, quality check and length check. Synchronous and CPU-bound; from async code use
/// [`extract_isolated`].
pub fn extract(bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    extract_declared(bytes, None, limits)
}

/// [`extract`], also told what the client declared the file to be (see
/// [`DocumentKind::from_file_name`] and [`DocumentKind::from_media_type`]). The content still
/// decides the parser; the declaration only catches one case the content cannot: a file
/// presented as a PDF or DOCX that holds plain text, which is a damaged or fake document rather
/// than a resume to send to the LLM.
pub fn extract_declared(
    bytes: &[u8],
    declared: Option<DocumentKind>,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let deadline = Instant::now().checked_add(limits.timeout);
    let result = extract_inner(bytes, declared, limits, deadline);
    match &result {
        Ok(extracted) => tracing::debug!(
            kind = extracted.kind.as_str(),
            bytes = bytes.len(),
            chars = extracted.text.chars().count(),
            "Document extracted"
        ),
        Err(error) => tracing::debug!(code = error.code(), bytes = bytes.len(), "Document refused"),
    }
    result
}

fn extract_inner(
    bytes: &[u8],
    declared: Option<DocumentKind>,
    limits: &Limits,
    deadline: Option<Instant>,
) -> Result<Extracted, ExtractError> {
    if bytes.len() > limits.max_bytes {
        return Err(ExtractError::TooLarge {
            limit_bytes: limits.max_bytes,
        });
    }
    let sniffed = sniff::sniff_and_decode(bytes)?;
    let kind = sniffed.kind();
    if let (
        Some(claimed @ (DocumentKind::Pdf | DocumentKind::Docx)),
        DocumentKind::Text | DocumentKind::Markdown,
    ) = (declared, kind)
    {
        return Err(ExtractError::Unreadable {
            reason: match claimed {
                DocumentKind::Pdf => "the file is presented as a PDF but does not contain one",
                _ => "the file is presented as a Word document but does not contain one",
            },
        });
    }
    // A deadline that overflows `Instant` is as good as none.
    let deadline = deadline.unwrap_or_else(far_future);
    let raw = match sniffed {
        sniff::Sniffed::Pdf => pdf::extract(bytes, limits, deadline)?,
        sniff::Sniffed::Docx => docx::extract(bytes, limits, deadline)?,
        sniff::Sniffed::Text { text, .. } => text,
    };
    let text = finish(&raw, limits)?;
    Ok(Extracted { kind, text })
}

fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(60 * 60 * 24 * 365))
        .unwrap_or(now)
}

/// Prepares text that a client sent directly (pasted, in JSON) exactly like extracted text:
/// normalisation, quality check, length check. Text longer than [`Limits::max_bytes`] is refused
/// before any work.
pub fn prepare_text(text: &str, limits: &Limits) -> Result<String, ExtractError> {
    if text.len() > limits.max_bytes {
        return Err(ExtractError::TooLarge {
            limit_bytes: limits.max_bytes,
        });
    }
    // No character takes more than four bytes, so text this long cannot fit after normalising
    // either; refusing it now spares normalising megabytes for nothing.
    if text.len() > limits.max_chars.saturating_mul(4) {
        return Err(ExtractError::TooLong {
            limit_chars: limits.max_chars,
        });
    }
    finish(text, limits)
}

fn finish(raw: &str, limits: &Limits) -> Result<String, ExtractError> {
    let text = normalize(raw);
    let chars = quality::check(&text, limits)?;
    if chars > limits.max_chars {
        return Err(ExtractError::TooLong {
            limit_chars: limits.max_chars,
        });
    }
    Ok(text)
}

/// [`extract`] in a `letterbox-extract` subprocess with its own address-space and CPU limits,
/// bounded by [`Limits::timeout`] (the process is killed then) and by a process-wide cap on
/// concurrent extractions (waiting more than a few seconds for a slot is [`ExtractError::Busy`]).
/// A crash of the subprocess, whatever its cause, becomes [`ExtractError::Unreadable`].
pub async fn extract_isolated(bytes: Vec<u8>, limits: Limits) -> Result<Extracted, ExtractError> {
    isolate::run(bytes, None, limits).await
}

/// [`extract_isolated`] with the client's declaration, as in [`extract_declared`].
pub async fn extract_isolated_declared(
    bytes: Vec<u8>,
    declared: Option<DocumentKind>,
    limits: Limits,
) -> Result<Extracted, ExtractError> {
    isolate::run(bytes, declared, limits).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_size_not_text() {
        let extracted = Extracted {
            kind: DocumentKind::Text,
            text: "secret résumé".to_owned(),
        };
        assert_eq!(
            format!("{extracted:?}"),
            "Extracted { kind: Text, chars: 13 }"
        );
    }

    #[test]
    fn declared_kinds() {
        assert_eq!(
            DocumentKind::from_file_name("CV Final.PDF"),
            Some(DocumentKind::Pdf)
        );
        assert_eq!(
            DocumentKind::from_file_name("cv.docx"),
            Some(DocumentKind::Docx)
        );
        assert_eq!(
            DocumentKind::from_file_name("cv.md"),
            Some(DocumentKind::Markdown)
        );
        assert_eq!(DocumentKind::from_file_name("cv.doc"), None);
        assert_eq!(DocumentKind::from_file_name("README"), None);
        assert_eq!(
            DocumentKind::from_media_type("Application/PDF"),
            Some(DocumentKind::Pdf)
        );
        assert_eq!(
            DocumentKind::from_media_type("text/plain; charset=utf-8"),
            Some(DocumentKind::Text)
        );
        assert_eq!(DocumentKind::from_media_type("image/png"), None);
    }

    #[test]
    fn kind_names() {
        let names: Vec<_> = [
            DocumentKind::Pdf,
            DocumentKind::Docx,
            DocumentKind::Markdown,
            DocumentKind::Text,
        ]
        .into_iter()
        .map(DocumentKind::as_str)
        .collect();
        assert_eq!(names, ["pdf", "docx", "markdown", "text"]);
    }
}
