//! Any bytes through `extract`, the producer's entry point: sniffing by content, then the PDF,
//! DOCX or text path, normalisation and the quality gate. Seeded with every corpus file.
#![no_main]

use letterbox_fuzz::{check_extraction, extract_like_the_subprocess, resume_limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = resume_limits();
    let sniffed = letterbox_extract::sniff(data);
    let result = extract_like_the_subprocess(data, None, &limits);
    check_extraction(&result, &limits);
    match (sniffed, &result) {
        // What sniffing refuses, extraction refuses with the same answer.
        (Err(refused), _) if data.len() <= limits.max_bytes => {
            assert_eq!(result.as_ref().err(), Some(&refused));
        }
        // What it accepts is read as the kind it named.
        (Ok(kind), Ok(extracted)) => assert_eq!(extracted.kind, kind),
        _ => {}
    }
});
