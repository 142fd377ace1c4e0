//! Why a document was refused. Each variant maps to one HTTP status in the producer and carries
//! only static or numeric data, so neither its `Display` nor its `Debug` can leak document text.

/// Everything that can go wrong between an upload and the text of a prompt.
///
/// The `Display` text is shown to end users: it says what happened and what to do next.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// The upload is bigger than [`crate::Limits::max_bytes`] (413).
    #[error(
        "The file is larger than {}. Upload a smaller file, for example a PDF without large images, or paste the text instead.",
        human_bytes(*limit_bytes)
    )]
    TooLarge { limit_bytes: usize },

    /// The extracted text, or the page count of a PDF, exceeds what a prompt can hold (413).
    #[error(
        "The document is too long: its text must fit in {limit_chars} characters. Upload a shorter document or paste only the relevant part."
    )]
    TooLong { limit_chars: usize },

    /// Not a PDF, DOCX, Markdown or plain-text document (415).
    #[error(
        "This file is {what}, which cannot be read here. Upload a PDF, a Word .docx file, Markdown or plain text (UTF-8)."
    )]
    Unsupported { what: &'static str },

    /// Password-protected and not readable with an empty password (422).
    #[error(
        "The document is password-protected. Save or export a copy without a password and upload that instead."
    )]
    Encrypted,

    /// No (or almost no) text, typically a scan or a picture of a resume (422).
    #[error(
        "No text could be extracted from the document; is it a scan or an image? Upload a file with selectable text, a .docx file, or paste the text."
    )]
    NoText,

    /// Text came out, but it is not something a reader (or the LLM) could use (422).
    #[error(
        "The text in the document is garbled, usually because of how its fonts were embedded. Export it again (for example as .docx or from another PDF printer) or paste the text."
    )]
    Garbled,

    /// Damaged, truncated or not really the format it appears to be (422).
    #[error(
        "The document could not be read: {reason}. Check that the file is complete and opens on your computer, then upload it again."
    )]
    Unreadable { reason: &'static str },

    /// Extraction did not finish within [`crate::Limits::timeout`] (422).
    #[error(
        "Reading the document took too long. Upload a simpler file (for example a PDF without large images) or paste the text."
    )]
    TimedOut,

    /// Every extraction slot is taken and none freed up in time: the server is overloaded (503).
    #[error("Too many documents are being read right now. Try again in a few seconds.")]
    Busy,
}

impl ExtractError {
    /// A stable snake_case code for API bodies, logs and metrics; the `Display` text may change,
    /// this may not.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "document_too_large",
            Self::TooLong { .. } => "text_too_long",
            Self::Unsupported { .. } => "unsupported_media_type",
            Self::Encrypted => "encrypted_document",
            Self::NoText => "no_text",
            Self::Garbled => "garbled_text",
            Self::Unreadable { .. } => "unreadable_document",
            Self::TimedOut => "extraction_timeout",
            Self::Busy => "overloaded",
        }
    }
}

/// Limits are usually whole mebibytes; say "10 MB" rather than "10485760 bytes" to a user.
fn human_bytes(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    const KIB: usize = 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_snake_case() {
        let all = [
            (
                ExtractError::TooLarge { limit_bytes: 1 },
                "document_too_large",
            ),
            (ExtractError::TooLong { limit_chars: 1 }, "text_too_long"),
            (
                ExtractError::Unsupported { what: "x" },
                "unsupported_media_type",
            ),
            (ExtractError::Encrypted, "encrypted_document"),
            (ExtractError::NoText, "no_text"),
            (ExtractError::Garbled, "garbled_text"),
            (
                ExtractError::Unreadable { reason: "x" },
                "unreadable_document",
            ),
            (ExtractError::TimedOut, "extraction_timeout"),
        ];
        for (error, code) in all {
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn size_limit_is_shown_in_megabytes() {
        let error = ExtractError::TooLarge {
            limit_bytes: 10 * 1024 * 1024,
        };
        assert_eq!(
            error.to_string(),
            "The file is larger than 10 MB. Upload a smaller file, for example a PDF without large images, or paste the text instead."
        );
        assert_eq!(human_bytes(1536), "1536 bytes");
        assert_eq!(human_bytes(2048), "2 KB");
    }

    #[test]
    fn unreadable_message_names_the_reason() {
        let error = ExtractError::Unreadable {
            reason: "the PDF is truncated",
        };
        assert_eq!(
            error.to_string(),
            "The document could not be read: the PDF is truncated. Check that the file is complete and opens on your computer, then upload it again."
        );
    }
}
