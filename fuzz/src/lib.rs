//! What every fuzz target checks. The producer runs extraction in a subprocess, so a parser's
//! panic or stack overflow costs one request a 422 rather than the server. In process, as here, a
//! library's panic is answered as that 422 is (the design holds); a panic in Letterbox's own code,
//! and any stack overflow, timeout or memory blow-up, is a crash that libFuzzer reports with the
//! input that caused it. Besides "no crash", each
//! answer must keep the contract the producer relies on: a refusal carries one of the codes the
//! README documents, and accepted text is what the normaliser and the quality gate promise.

use letterbox_extract::{DocumentKind, ExtractError, Extracted, Limits};

/// The stack `letterbox-extract` gives its extraction thread (`isolate::STACK_SIZE`): a file deep
/// enough to overflow it crashes the subprocess too, while one that only overflows libFuzzer's
/// main-thread stack would be a false alarm.
const SUBPROCESS_STACK: usize = 64 * 1024 * 1024;

/// The resume limits of a producer with default settings (`LETTERBOX_MAX_RESUME_CHARS`).
pub fn resume_limits() -> Limits {
    Limits {
        max_chars: 50_000,
        ..Limits::default()
    }
}

/// A panic inside a library's code (a crate from the registry, pdf_oxide's parsers say): in the
/// producer it ends the `letterbox-extract` subprocess, which is answered as an unreadable
/// document, so here too it is that answer, not a crash. Stack overflows, timeouts and memory
/// blow-ups in libraries, and any panic in Letterbox's own code, still abort and are reported.
fn library_panics_are_answers() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // libFuzzer's hook: it aborts, and libFuzzer saves the input.
        let aborting = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_library = info
                .location()
                .is_some_and(|at| at.file().contains("/registry/src/"));
            if !in_library {
                aborting(info);
            }
        }));
    });
}

/// What the producer answers when `letterbox-extract` dies (`isolate::CRASHED`).
fn crashed() -> ExtractError {
    ExtractError::Unreadable {
        reason: "the document could not be parsed",
    }
}

/// [`letterbox_extract::extract_declared`] on a thread with the subprocess's stack. A panic in
/// Letterbox's code on that thread goes through libFuzzer's panic hook, which aborts and saves
/// the input; one in a library's is answered as the subprocess's death is.
pub fn extract_like_the_subprocess(
    bytes: &[u8],
    declared: Option<DocumentKind>,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    library_panics_are_answers();
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .stack_size(SUBPROCESS_STACK)
            .spawn_scoped(scope, || {
                letterbox_extract::extract_declared(bytes, declared, limits)
            });
        match thread {
            Ok(thread) => thread.join().unwrap_or_else(|_library_panic| Err(crashed())),
            // Out of threads or memory: not the document's fault; run it here instead.
            Err(_) => letterbox_extract::extract_declared(bytes, declared, limits),
        }
    })
}

/// The codes an extraction may answer with in-process: the README's 413, 415 and 422 codes.
/// (`overloaded` comes from the subprocess pool, which the fuzz targets do not use.)
const EXTRACTION_CODES: [&str; 8] = [
    "document_too_large",
    "text_too_long",
    "unsupported_media_type",
    "encrypted_document",
    "no_text",
    "garbled_text",
    "unreadable_document",
    "extraction_timeout",
];

/// Checks one answer of the extractor against its contract.
pub fn check_extraction(result: &Result<Extracted, ExtractError>, limits: &Limits) {
    match result {
        Ok(extracted) => check_prompt_text(&extracted.text, limits),
        Err(error) => assert!(
            EXTRACTION_CODES.contains(&error.code()),
            "undocumented refusal {error:?} ({})",
            error.code()
        ),
    }
}

/// Text the extractor accepted: the normaliser's output that passed the quality gate.
pub fn check_prompt_text(text: &str, limits: &Limits) {
    let chars = text.chars().count();
    assert!(
        chars <= limits.max_chars,
        "accepted text of {chars} characters, over the limit of {}",
        limits.max_chars
    );
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    assert!(
        letters >= limits.min_letters,
        "accepted text with {letters} letters, under the minimum of {}",
        limits.min_letters
    );
    assert_eq!(text, text.trim(), "accepted text has blank space around it");
    assert!(
        !text.contains("\n\n\n"),
        "accepted text has more than one blank line in a row"
    );
    if let Some(c) = text.chars().find(|&c| {
        (c.is_control() && c != '\n') || ('\u{E000}'..='\u{F8FF}').contains(&c) || c == '\u{FEFF}'
    }) {
        panic!(
            "accepted text holds an invisible character U+{:04X}",
            u32::from(c)
        );
    }
}
