//! Runs extraction away from the async runtime. Parsers of hostile files can panic, recurse
//! deeply or spin; none of that may take down the process or stall the reactor. Each extraction
//! gets its own OS thread with a large stack, a panic becomes a 422, and the caller stops waiting
//! at the time limit.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, LazyLock};

use tokio::sync::{Semaphore, oneshot};

use crate::{DocumentKind, ExtractError, Extracted, Limits, extract_declared};

/// pdf_oxide parses nested objects recursively. 64 MiB of (lazily committed) stack covers, with
/// a wide margin, every nesting depth the pre-flight scan in `pdf_guard` lets through; an
/// overflow would abort the process, not just this thread.
const STACK_SIZE: usize = 64 * 1024 * 1024;

/// Extractions running at once across the process. Each can use a core and tens of MB, so a
/// burst of uploads queues here instead of exhausting the machine.
const MAX_CONCURRENT: usize = 4;

/// Shared by every caller; the permit travels into the worker thread so that a thread still
/// running after its caller timed out keeps counting against the bound.
static PERMITS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(MAX_CONCURRENT)));

const PANICKED: ExtractError = ExtractError::Unreadable {
    reason: "the document could not be parsed",
};

pub(crate) async fn run(
    bytes: Vec<u8>,
    declared: Option<DocumentKind>,
    limits: Limits,
) -> Result<Extracted, ExtractError> {
    // Refused before queueing: no reason to wait for a slot to say "too large".
    if bytes.len() > limits.max_bytes {
        return Err(ExtractError::TooLarge {
            limit_bytes: limits.max_bytes,
        });
    }
    // Waiting for a slot is not bounded by `limits.timeout`, which measures the document, not
    // the server's load; callers that need a bound on queueing wrap this future in their own.
    let permit =
        Arc::clone(&PERMITS)
            .acquire_owned()
            .await
            .map_err(|_| ExtractError::Unreadable {
                reason: "the server is shutting down",
            })?;

    let (sender, receiver) = oneshot::channel();
    let timeout = limits.timeout;
    std::thread::Builder::new()
        .name("letterbox-extract".to_owned())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                extract_declared(&bytes, declared, &limits)
            }));
            drop(permit);
            let result = outcome.unwrap_or_else(|_| {
                tracing::warn!(
                    bytes = bytes.len(),
                    "Document parser panicked; the upload is refused as unreadable"
                );
                Err(PANICKED)
            });
            // The receiver is gone when the caller timed out; the result is simply dropped.
            let _ = sender.send(result);
        })
        .map_err(|error| {
            tracing::error!(error = %error, "Could not start an extraction thread");
            ExtractError::Unreadable {
                reason: "the server could not start reading the document",
            }
        })?;

    match tokio::time::timeout(timeout, receiver).await {
        Ok(Ok(result)) => result,
        // The thread ended without sending: only a panic outside `catch_unwind` does that.
        Ok(Err(_)) => Err(PANICKED),
        Err(_) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "Document extraction timed out"
            );
            Err(ExtractError::TimedOut)
        }
    }
}
