//! Extraction of real-world documents made by other tools (see shared/corpus/README.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use letterbox_extract::{
    DocumentKind, ExtractError, Limits, extract, extract_declared, extract_isolated,
    extract_isolated_declared, sniff,
};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/");

fn corpus(name: &str) -> Vec<u8> {
    let path = format!("{CORPUS}{name}");
    std::fs::read(&path).unwrap_or_else(|error| panic!("corpus file {path}: {error}"))
}

fn is_private_use(c: char) -> bool {
    matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{10FFFF}')
}

#[test]
fn typst_cv_keeps_names_and_accents_and_drops_icon_glyphs() {
    let bytes = corpus("rendercv_John_Doe_ClassicTheme_CV.pdf");
    assert_eq!(sniff(&bytes), Ok(DocumentKind::Pdf));

    let extracted = extract(&bytes, &Limits::default()).unwrap();
    assert_eq!(extracted.kind, DocumentKind::Pdf);
    let text = &extracted.text;
    for expected in [
        "John Doe",
        "Princeton University",
        "Boğaziçi University",
        "Istanbul, Türkiye",
    ] {
        assert!(text.contains(expected), "missing {expected:?}");
    }
    assert_eq!(text.chars().filter(|&c| is_private_use(c)).count(), 0);
    assert_eq!(
        text.chars()
            .filter(|&c| c.is_control() && c != '\n')
            .count(),
        0
    );
    // The icon glyphs in the header are gone, their neighbours stay.
    assert!(text.contains("San Francisco, CA john.doe@email.com rendercv.com"));
    // Two pages, joined by one blank line.
    assert!(text.contains("John Doe – 1/2\n\nProjects\n"));
    assert!(text.ends_with("John Doe – 2/2"));
    assert!(!text.contains("\n\n\n"));
}

#[test]
fn python_docx_resume_is_read_in_order_and_passes_the_zip_bomb_guard() {
    let bytes = corpus("scorelia_sample_resume.docx");
    assert_eq!(sniff(&bytes), Ok(DocumentKind::Docx));

    let extracted = extract(&bytes, &Limits::default()).unwrap();
    assert_eq!(extracted.kind, DocumentKind::Docx);
    let text = &extracted.text;
    assert!(text.starts_with("John Doe\nSoftware Engineer\njohn.doe@email.com | (123) 456-7890\n"));
    for expected in [
        "Software Engineer at Google",
        "CareerPilot AI: Side project for parsing resumes.",
    ] {
        assert!(text.contains(expected), "missing {expected:?}");
    }
    assert!(text.ends_with("Certifications\nOracle AI Foundations\nOCI Architect Associate"));
}

#[test]
fn zip_bomb_guard_bounds_the_docx_text_part_by_size() {
    // word/document.xml inflates to 3,541 bytes from 1,048.
    let bytes = corpus("scorelia_sample_resume.docx");
    let roomy = Limits {
        max_decompressed_bytes: 3541,
        ..Limits::default()
    };
    assert!(extract(&bytes, &roomy).is_ok());
    let tight = Limits {
        max_decompressed_bytes: 3540,
        ..Limits::default()
    };
    assert_eq!(
        extract(&bytes, &tight),
        Err(ExtractError::Unreadable {
            reason: "the DOCX file unpacks to far more data than a resume holds (a possible zip bomb)"
        })
    );
}

#[test]
fn ats_plain_text_resume_is_text_and_unchanged() {
    let bytes = corpus("rendercv_sample_cv_text.txt");
    assert_eq!(sniff(&bytes), Ok(DocumentKind::Text));

    let extracted = extract(&bytes, &Limits::default()).unwrap();
    assert_eq!(extracted.kind, DocumentKind::Text);
    assert_eq!(extracted.text, std::str::from_utf8(&bytes).unwrap().trim());
    assert!(
        extracted
            .text
            .starts_with("SARAH JOHNSON\nSoftware Developer | San Francisco, CA")
    );
}

#[test]
fn job_description_keeps_its_em_dash() {
    let extracted = extract(
        &corpus("resume-matcher_jd_backend-eng.txt"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(extracted.kind, DocumentKind::Text);
    assert!(
        extracted
            .text
            .starts_with("We are looking for a Senior Backend Engineer")
    );
    assert!(
        extracted
            .text
            .contains("ownership of reliability — on-call rotations")
    );
}

#[tokio::test]
async fn image_only_pdf_is_no_text_not_an_empty_resume() {
    let bytes = corpus("larpmyresume_image_only.pdf");
    assert_eq!(sniff(&bytes), Ok(DocumentKind::Pdf));
    assert_eq!(
        extract(&bytes, &Limits::default()),
        Err(ExtractError::NoText)
    );
    assert_eq!(
        extract_isolated(bytes, Limits::default()).await,
        Err(ExtractError::NoText)
    );
}

/// The "corrupt PDF" is 71 bytes of English prose. By content alone it is a (very short) text
/// file, and nothing in the bytes says otherwise; what makes it a broken upload is that it was
/// presented as a PDF. The declared type turns that into a clear 422.
#[tokio::test]
async fn text_presented_as_a_pdf_is_refused_as_unreadable() {
    let bytes = corpus("scorelia_corrupt_file.pdf");
    assert_eq!(sniff(&bytes), Ok(DocumentKind::Text));

    let unreadable = ExtractError::Unreadable {
        reason: "the file is presented as a PDF but does not contain one",
    };
    let declared = DocumentKind::from_file_name("corrupt_file.pdf");
    assert_eq!(declared, Some(DocumentKind::Pdf));
    assert_eq!(
        extract_declared(&bytes, declared, &Limits::default()),
        Err(unreadable.clone())
    );
    assert_eq!(
        extract_isolated_declared(
            bytes.clone(),
            DocumentKind::from_media_type("application/pdf"),
            Limits::default()
        )
        .await,
        Err(unreadable.clone())
    );
    assert_eq!(unreadable.code(), "unreadable_document");

    // Without a declaration the same bytes are what they look like: a short text.
    let undeclared = extract(&bytes, &Limits::default()).unwrap();
    assert_eq!(undeclared.kind, DocumentKind::Text);
    assert_eq!(
        undeclared.text,
        "This is a corrupt pdf file with junk bytes instead of real PDF content!"
    );
}

#[tokio::test]
async fn corpus_documents_extract_the_same_in_isolation() {
    for name in [
        "rendercv_John_Doe_ClassicTheme_CV.pdf",
        "scorelia_sample_resume.docx",
        "rendercv_sample_cv_text.txt",
    ] {
        let bytes = corpus(name);
        let direct = extract(&bytes, &Limits::default()).unwrap();
        let isolated = extract_isolated(bytes, Limits::default()).await.unwrap();
        assert_eq!(isolated, direct, "{name}");
    }
}
