//! The PDF path: the nesting and decompression guard, pdf_oxide and the page loop. Every input
//! is made to sniff as a PDF (a `%PDF-` header is put in front when the first KiB lacks one), so
//! no execution is spent on the sniffer's refusals. Seeded with the corpus PDFs.
#![no_main]

use letterbox_extract::DocumentKind;
use letterbox_fuzz::{check_extraction, extract_like_the_subprocess, resume_limits};
use libfuzzer_sys::fuzz_target;

/// How far into a file the sniffer looks for the header (`sniff::PDF_HEADER_WINDOW`).
const HEADER_WINDOW: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let head = &data[..data.len().min(HEADER_WINDOW)];
    let has_header = head.windows(5).any(|window| window == b"%PDF-");
    let bytes = if has_header {
        data.to_vec()
    } else {
        [b"%PDF-1.7\n".as_slice(), data].concat()
    };
    let limits = resume_limits();
    let result = extract_like_the_subprocess(&bytes, Some(DocumentKind::Pdf), &limits);
    check_extraction(&result, &limits);
    if let Ok(extracted) = &result {
        assert_eq!(extracted.kind, DocumentKind::Pdf);
    }
});
