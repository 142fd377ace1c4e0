//! Text a client pastes into the JSON body (`resume_text`, `job_description`): `prepare_text`,
//! which normalises it and applies the quality gate without any sniffing. Seeded with the corpus
//! text files.
#![no_main]

use letterbox_fuzz::{check_prompt_text, resume_limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // JSON strings are UTF-8; anything else never reaches this function.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = resume_limits();
    match letterbox_extract::prepare_text(text, &limits) {
        Ok(prepared) => check_prompt_text(&prepared, &limits),
        Err(error) => assert!(
            matches!(
                error.code(),
                "document_too_large" | "text_too_long" | "no_text" | "garbled_text"
            ),
            "pasted text refused as {error:?}"
        ),
    }
});
