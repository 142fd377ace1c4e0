//! PDF text through pdf_oxide, which keeps CJK text from CID fonts and does not letter-space
//! Chromium output. It returns empty text rather than an error for a locked file, so encryption
//! is checked explicitly before any page is read.

use std::sync::Once;
use std::time::Instant;

use pdf_oxide::PdfDocument;

use crate::{ExtractError, Limits};

/// pdf_oxide keeps parsed fonts in a process-wide cache sized for batch jobs (1024 fonts). Each
/// upload brings its own fonts, so a large cache only holds memory in a long-running server.
const FONT_CACHE_ENTRIES: usize = 64;

/// Whitespace that normalisation removes lets raw text run somewhat past the final limit, but
/// not without bound: past this multiple of `max_chars` the document is too long whatever
/// normalisation does.
const RAW_TEXT_HEADROOM: usize = 4;

pub(crate) fn extract(
    bytes: &[u8],
    limits: &Limits,
    deadline: Instant,
) -> Result<String, ExtractError> {
    static SHRINK_FONT_CACHE: Once = Once::new();
    SHRINK_FONT_CACHE.call_once(|| pdf_oxide::set_global_font_cache_capacity(FONT_CACHE_ENTRIES));

    crate::pdf_guard::check(bytes, limits.max_decompressed_bytes)?;

    let doc = PdfDocument::from_bytes(bytes.to_vec()).map_err(|error| match error {
        pdf_oxide::Error::EncryptedPdf => ExtractError::Encrypted,
        other => {
            // Parser messages can quote the document: log the kind of failure only.
            tracing::debug!(error = ?std::mem::discriminant(&other), "PDF could not be opened");
            ExtractError::Unreadable {
                reason: "the file is not a valid PDF or is damaged",
            }
        }
    })?;

    // Opening already tried the empty user password, which is how "protected" resumes that
    // only restrict printing or copying are stored; anything else needs a password we lack.
    let encrypted = doc.is_encrypted();
    if encrypted && !doc.is_authenticated() {
        return Err(ExtractError::Encrypted);
    }

    let pages = doc.page_count().map_err(|error| match error {
        pdf_oxide::Error::EncryptedPdf => ExtractError::Encrypted,
        other => {
            tracing::debug!(error = ?std::mem::discriminant(&other), "PDF page tree could not be read");
            ExtractError::Unreadable {
                reason: "the PDF's page structure is damaged",
            }
        }
    })?;
    if pages == 0 {
        return Err(ExtractError::Unreadable {
            reason: "the PDF has no pages",
        });
    }
    if pages > limits.max_pages {
        tracing::debug!(
            pages,
            max_pages = limits.max_pages,
            "PDF has too many pages"
        );
        return Err(ExtractError::TooLong {
            limit_chars: limits.max_chars,
        });
    }

    let raw_budget = limits.max_chars.saturating_mul(RAW_TEXT_HEADROOM);
    let mut text = String::new();
    let mut raw_chars = 0usize;
    let mut failed_pages = 0usize;
    for page in 0..pages {
        // The isolating thread cannot be killed, so a hostile file must not keep it busy for
        // long after the caller has given up: check the clock between pages.
        if Instant::now() > deadline {
            return Err(ExtractError::TimedOut);
        }
        match doc.extract_text(page) {
            Ok(page_text) => {
                raw_chars += page_text.chars().count();
                if raw_chars > raw_budget {
                    return Err(ExtractError::TooLong {
                        limit_chars: limits.max_chars,
                    });
                }
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(&page_text);
            }
            Err(pdf_oxide::Error::EncryptedPdf) => return Err(ExtractError::Encrypted),
            // One broken page should not cost the whole resume; the quality check still
            // refuses the result if too little is left.
            Err(error) => {
                failed_pages += 1;
                tracing::debug!(page, error = ?std::mem::discriminant(&error), "PDF page text could not be extracted");
            }
        }
    }
    if failed_pages == pages {
        return Err(ExtractError::Unreadable {
            reason: "the PDF's content could not be parsed",
        });
    }
    // An encrypted file that opened yet yields no letters was most likely not decrypted
    // (an unsupported security handler): say so rather than suggest it is a scan.
    if encrypted && !text.chars().any(char::is_alphabetic) {
        return Err(ExtractError::Encrypted);
    }
    Ok(text)
}
