//! PDFs made in the test: encryption, page limits, hostile structure, time limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use letterbox_extract::{DocumentKind, ExtractError, Limits, extract, extract_isolated};
use pdf_oxide::api::Pdf;
use pdf_oxide::editor::{DocumentEditor, EncryptionAlgorithm, EncryptionConfig, SaveOptions};

const RESUME: &str = "Jane Doe\n\nSenior Rust engineer with eight years of payments experience.";

const TOO_DEEP: ExtractError = ExtractError::Unreadable {
    reason: "the PDF's structure is nested far deeper than any real document",
};

fn generated_pdf() -> Vec<u8> {
    Pdf::from_text(RESUME).unwrap().into_bytes()
}

fn encrypted(user_password: &str, algorithm: EncryptionAlgorithm) -> Vec<u8> {
    let mut editor = DocumentEditor::from_bytes(generated_pdf()).unwrap();
    let config = EncryptionConfig::new(user_password, "owner-secret").with_algorithm(algorithm);
    editor
        .save_to_bytes_with_options(SaveOptions::with_encryption(config))
        .unwrap()
}

/// A one-page PDF written by hand, with `extra` spliced into the catalog and `content` as the
/// page's uncompressed content stream.
fn handmade_pdf(extra: &[u8], content: &[u8]) -> Vec<u8> {
    let objects: Vec<Vec<u8>> = vec![
        [b"<< /Type /Catalog /Pages 2 0 R /Extra ".as_slice(), extra, b" >>"].concat(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
            .to_vec(),
        [format!("<< /Length {} >>\nstream\n", content.len()).as_bytes(), content, b"\nendstream"].concat(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend(object);
        pdf.extend(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        pdf.extend(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

const SHOW_TEXT: &[u8] = b"BT /F1 12 Tf 72 700 Td (Jane Doe, senior Rust engineer with eight years of payments experience.) Tj ET";

fn nested(depth: usize) -> Vec<u8> {
    [vec![b'['; depth], vec![b']'; depth]].concat()
}

#[test]
fn generated_pdf_is_read() {
    let extracted = extract(&generated_pdf(), &Limits::default()).unwrap();
    assert_eq!(extracted.kind, DocumentKind::Pdf);
    assert_eq!(extracted.text, RESUME);
}

#[test]
fn encrypted_pdf_with_an_empty_user_password_is_read() {
    for algorithm in [
        EncryptionAlgorithm::Rc4_40,
        EncryptionAlgorithm::Rc4_128,
        EncryptionAlgorithm::Aes128,
        EncryptionAlgorithm::Aes256,
    ] {
        let extracted = extract(&encrypted("", algorithm), &Limits::default()).unwrap();
        assert_eq!(extracted.text, RESUME, "{algorithm:?}");
    }
}

#[test]
fn password_protected_pdf_is_encrypted() {
    for algorithm in [EncryptionAlgorithm::Rc4_128, EncryptionAlgorithm::Aes256] {
        let error = extract(&encrypted("user-secret", algorithm), &Limits::default()).unwrap_err();
        assert_eq!(error, ExtractError::Encrypted, "{algorithm:?}");
        assert_eq!(error.code(), "encrypted_document");
    }
}

#[test]
fn pdf_with_more_pages_than_allowed_is_too_long() {
    let two_pages = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/rendercv_John_Doe_ClassicTheme_CV.pdf"
    ))
    .unwrap();
    let limits = Limits {
        max_pages: 1,
        ..Limits::default()
    };
    assert_eq!(
        extract(&two_pages, &limits),
        Err(ExtractError::TooLong {
            limit_chars: 100_000
        })
    );
    let limits = Limits {
        max_pages: 2,
        ..Limits::default()
    };
    assert!(extract(&two_pages, &limits).is_ok());
}

#[test]
fn handmade_pdf_is_read() {
    let extracted = extract(&handmade_pdf(b"1", SHOW_TEXT), &Limits::default()).unwrap();
    assert_eq!(
        extracted.text,
        "Jane Doe, senior Rust engineer with eight years of payments experience."
    );
}

#[tokio::test]
async fn header_followed_by_brackets_is_refused_without_crashing() {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'[', 100_000));
    assert_eq!(
        extract_isolated(bytes, Limits::default()).await,
        Err(TOO_DEEP)
    );
}

/// Nesting this deep inside a real object overflows even a 64 MiB stack in the parser, which
/// would abort the process; the pre-flight scan refuses it first.
#[tokio::test]
async fn deeply_nested_objects_are_refused_without_crashing() {
    let in_catalog = handmade_pdf(&nested(200_000), SHOW_TEXT);
    assert_eq!(
        extract_isolated(in_catalog, Limits::default()).await,
        Err(TOO_DEEP)
    );
    let in_content = handmade_pdf(b"1", &[SHOW_TEXT, b" ", &nested(200_000), b" TJ"].concat());
    assert_eq!(
        extract_isolated(in_content, Limits::default()).await,
        Err(TOO_DEEP)
    );
}

#[tokio::test]
async fn moderately_nested_content_is_still_read() {
    let pdf = handmade_pdf(
        &nested(100),
        &[SHOW_TEXT, b" ", &nested(1000), b" TJ"].concat(),
    );
    let extracted = extract_isolated(pdf, Limits::default()).await.unwrap();
    assert_eq!(
        extracted.text,
        "Jane Doe, senior Rust engineer with eight years of payments experience."
    );
}

#[tokio::test]
async fn truncated_and_damaged_pdfs_are_unreadable() {
    let pdf = generated_pdf();
    assert_eq!(
        extract_isolated(pdf[..pdf.len() / 2].to_vec(), Limits::default()).await,
        Err(ExtractError::Unreadable {
            reason: "the PDF's content could not be parsed"
        })
    );
    assert_eq!(
        extract_isolated(b"%PDF-1.7\n".to_vec(), Limits::default()).await,
        Err(ExtractError::Unreadable {
            reason: "the file is not a valid PDF or is damaged"
        })
    );
}

#[tokio::test]
async fn extraction_past_the_time_limit_times_out() {
    let limits = Limits {
        timeout: Duration::ZERO,
        ..Limits::default()
    };
    assert_eq!(
        extract(&generated_pdf(), &limits),
        Err(ExtractError::TimedOut)
    );
    assert_eq!(
        extract_isolated(generated_pdf(), limits).await,
        Err(ExtractError::TimedOut)
    );
}

#[tokio::test]
async fn a_burst_of_uploads_is_served_in_turn() {
    let pdf = generated_pdf();
    let tasks: Vec<_> = (0..12)
        .map(|_| tokio::spawn(extract_isolated(pdf.clone(), Limits::default())))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().text, RESUME);
    }
}
