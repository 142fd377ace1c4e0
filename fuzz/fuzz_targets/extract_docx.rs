//! Whole DOCX files, as uploaded: the ZIP reader, the zip-bomb bounds, the relationships and
//! style parts, the XML walk. Declared as DOCX, as a browser sends a `.docx` upload. Seeded with
//! the corpus DOCX; `docx_xml` fuzzes the XML inside a well-formed archive.
#![no_main]

use letterbox_extract::DocumentKind;
use letterbox_fuzz::{check_extraction, extract_like_the_subprocess, resume_limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = resume_limits();
    let result = extract_like_the_subprocess(data, Some(DocumentKind::Docx), &limits);
    check_extraction(&result, &limits);
    if let Ok(extracted) = &result {
        // Declared a Word document: text that is not one is refused, a PDF is still read.
        assert!(
            matches!(extracted.kind, DocumentKind::Docx | DocumentKind::Pdf),
            "a file declared as DOCX was read as {}",
            extracted.kind
        );
    }
});
