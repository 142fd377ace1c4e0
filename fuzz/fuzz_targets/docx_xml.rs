//! The DOCX parts themselves, inside an archive that is always valid: byte mutations of a real
//! DOCX mostly break its ZIP checksums and never reach the XML walk or the style resolver.
//!
//! Input: `word/document.xml`, then optionally a NUL byte and `word/styles.xml`, then optionally
//! another NUL and `word/_rels/document.xml.rels` (XML holds no NUL, so the split is unambiguous).
//! `script/fuzz` seeds it with those three parts of the corpus DOCX, joined that way.
#![no_main]

use std::io::{Cursor, Write};

use letterbox_extract::DocumentKind;
use letterbox_fuzz::{check_extraction, extract_like_the_subprocess, resume_limits};
use libfuzzer_sys::fuzz_target;
use zip::write::SimpleFileOptions;

const PARTS: [&str; 3] = [
    "word/document.xml",
    "word/styles.xml",
    "word/_rels/document.xml.rels",
];

fn package(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, body) in PARTS.iter().zip(parts) {
        zip.start_file(*name, stored).ok()?;
        zip.write_all(body).ok()?;
    }
    Some(zip.finish().ok()?.into_inner())
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(PARTS.len(), |&b| b == 0).collect();
    let Some(docx) = package(&parts) else {
        return;
    };
    let limits = resume_limits();
    let result = extract_like_the_subprocess(&docx, Some(DocumentKind::Docx), &limits);
    check_extraction(&result, &limits);
    if let Ok(extracted) = &result {
        assert_eq!(extracted.kind, DocumentKind::Docx);
    }
});
