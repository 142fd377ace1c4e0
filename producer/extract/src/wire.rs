//! What the producer and its extraction subprocess say to each other: the request as one JSON
//! argument, the document on stdin, the result as one JSON document on stdout.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{DocumentKind, ExtractError, Extracted, Limits};

#[derive(Serialize, Deserialize)]
pub(crate) struct WireRequest {
    pub declared: Option<WireKind>,
    pub max_bytes: usize,
    pub max_chars: usize,
    pub max_pages: usize,
    pub max_decompressed_bytes: u64,
    pub timeout_ms: u64,
    pub min_letters: usize,
}

impl WireRequest {
    pub fn new(declared: Option<DocumentKind>, limits: &Limits) -> Self {
        Self {
            declared: declared.map(WireKind::from),
            max_bytes: limits.max_bytes,
            max_chars: limits.max_chars,
            max_pages: limits.max_pages,
            max_decompressed_bytes: limits.max_decompressed_bytes,
            timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            min_letters: limits.min_letters,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_bytes: self.max_bytes,
            max_chars: self.max_chars,
            max_pages: self.max_pages,
            max_decompressed_bytes: self.max_decompressed_bytes,
            timeout: Duration::from_millis(self.timeout_ms),
            min_letters: self.min_letters,
        }
    }
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireKind {
    Pdf,
    Docx,
    Markdown,
    Text,
}

impl From<DocumentKind> for WireKind {
    fn from(kind: DocumentKind) -> Self {
        match kind {
            DocumentKind::Pdf => Self::Pdf,
            DocumentKind::Docx => Self::Docx,
            DocumentKind::Markdown => Self::Markdown,
            DocumentKind::Text => Self::Text,
        }
    }
}

impl From<WireKind> for DocumentKind {
    fn from(kind: WireKind) -> Self {
        match kind {
            WireKind::Pdf => Self::Pdf,
            WireKind::Docx => Self::Docx,
            WireKind::Markdown => Self::Markdown,
            WireKind::Text => Self::Text,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireResult {
    Ok { kind: WireKind, text: String },
    Err(WireError),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub(crate) enum WireError {
    TooLarge { limit_bytes: usize },
    TooLong { limit_chars: usize },
    Unsupported { what: String },
    Encrypted,
    NoText,
    Garbled,
    Unreadable { reason: String },
    TimedOut,
    Busy,
}

impl From<Result<Extracted, ExtractError>> for WireResult {
    fn from(result: Result<Extracted, ExtractError>) -> Self {
        match result {
            Ok(extracted) => Self::Ok {
                kind: extracted.kind.into(),
                text: extracted.text,
            },
            Err(error) => Self::Err(match error {
                ExtractError::TooLarge { limit_bytes } => WireError::TooLarge { limit_bytes },
                ExtractError::TooLong { limit_chars } => WireError::TooLong { limit_chars },
                ExtractError::Unsupported { what } => WireError::Unsupported {
                    what: what.to_owned(),
                },
                ExtractError::Encrypted => WireError::Encrypted,
                ExtractError::NoText => WireError::NoText,
                ExtractError::Garbled => WireError::Garbled,
                ExtractError::Unreadable { reason } => WireError::Unreadable {
                    reason: reason.to_owned(),
                },
                ExtractError::TimedOut => WireError::TimedOut,
                ExtractError::Busy => WireError::Busy,
            }),
        }
    }
}

impl From<WireResult> for Result<Extracted, ExtractError> {
    fn from(result: WireResult) -> Self {
        match result {
            WireResult::Ok { kind, text } => Ok(Extracted {
                kind: kind.into(),
                text,
            }),
            WireResult::Err(error) => Err(match error {
                WireError::TooLarge { limit_bytes } => ExtractError::TooLarge { limit_bytes },
                WireError::TooLong { limit_chars } => ExtractError::TooLong { limit_chars },
                WireError::Unsupported { what } => ExtractError::Unsupported { what: intern(what) },
                WireError::Encrypted => ExtractError::Encrypted,
                WireError::NoText => ExtractError::NoText,
                WireError::Garbled => ExtractError::Garbled,
                WireError::Unreadable { reason } => ExtractError::Unreadable {
                    reason: intern(reason),
                },
                WireError::TimedOut => ExtractError::TimedOut,
                WireError::Busy => ExtractError::Busy,
            }),
        }
    }
}

/// The subprocess only ever sends the crate's own fixed phrases, so they are interned once each
/// and live as `&'static str` like the originals. The table is bounded all the same: a phrase
/// past the bound (which only a broken subprocess could send) becomes a generic one.
fn intern(text: String) -> &'static str {
    const MAX_PHRASES: usize = 128;
    static PHRASES: LazyLock<Mutex<Vec<&'static str>>> = LazyLock::new(Mutex::default);
    let mut phrases = PHRASES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = phrases.iter().find(|known| **known == text) {
        return known;
    }
    if phrases.len() >= MAX_PHRASES || text.len() > 200 {
        return "the document could not be parsed";
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    phrases.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_survives_the_trip_through_the_subprocess_protocol() {
        let cases: Vec<Result<Extracted, ExtractError>> = vec![
            Ok(Extracted {
                kind: DocumentKind::Docx,
                text: "Ada\nRust".into(),
            }),
            Err(ExtractError::TooLarge { limit_bytes: 7 }),
            Err(ExtractError::TooLong { limit_chars: 9 }),
            Err(ExtractError::Unsupported {
                what: "an image (PNG)",
            }),
            Err(ExtractError::Encrypted),
            Err(ExtractError::NoText),
            Err(ExtractError::Garbled),
            Err(ExtractError::Unreadable {
                reason: "the PDF's page structure is damaged",
            }),
            Err(ExtractError::TimedOut),
            Err(ExtractError::Busy),
        ];
        for case in cases {
            let json = serde_json::to_string(&WireResult::from(case.clone())).unwrap();
            let back: Result<Extracted, ExtractError> =
                serde_json::from_str::<WireResult>(&json).unwrap().into();
            assert_eq!(back, case, "{json}");
        }
    }

    #[test]
    fn interned_phrases_are_shared_and_bounded() {
        let first = intern("a phrase".to_owned());
        let second = intern("a phrase".to_owned());
        assert!(std::ptr::eq(first, second));
        assert_eq!(intern("x".repeat(300)), "the document could not be parsed");
    }
}
