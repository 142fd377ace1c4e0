//! Runs extraction in a subprocess (`letterbox-extract`). Parsers of hostile files can panic,
//! recurse until the stack overflows, spin or allocate without end; a stack overflow aborts a
//! process and cannot be caught, so none of it may happen inside the server. Each document gets
//! a fresh process that limits its own address space and CPU time; the server only sees a
//! result, a refusal, or an exit status it turns into "could not be parsed".

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Semaphore;

use crate::wire::{WireRequest, WireResult};
use crate::{DocumentKind, ExtractError, Extracted, Limits, extract_declared};

/// Extractions running at once across the process. Each can use a core and tens of MB, so a
/// burst of uploads queues here instead of exhausting the machine.
const MAX_CONCURRENT: usize = 4;

/// How long an upload may wait for a slot before the server says it is busy (503).
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// The subprocess's address-space limit: far above what a resume needs, far below the machine.
const MAX_ADDRESS_SPACE: u64 = 2 * 1024 * 1024 * 1024;

/// The environment variable naming the `letterbox-extract` binary, when it is not installed
/// beside the producer.
pub const EXTRACTOR_ENV: &str = "LETTERBOX_EXTRACTOR";

static PERMITS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(MAX_CONCURRENT)));

static EXTRACTOR: OnceLock<Result<PathBuf, String>> = OnceLock::new();

const CRASHED: ExtractError = ExtractError::Unreadable {
    reason: "the document could not be parsed",
};

/// Finds `letterbox-extract`: `$LETTERBOX_EXTRACTOR`, else beside the running executable (or one
/// folder up, where Cargo puts binaries relative to test executables).
pub fn extractor() -> Result<&'static PathBuf, String> {
    EXTRACTOR
        .get_or_init(|| {
            if let Some(path) = std::env::var_os(EXTRACTOR_ENV) {
                let path = PathBuf::from(path);
                return if path.is_file() {
                    Ok(path)
                } else {
                    Err(format!("{EXTRACTOR_ENV}={} is not a file", path.display()))
                };
            }
            let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
            let name = format!("letterbox-extract{}", std::env::consts::EXE_SUFFIX);
            exe.ancestors()
                .skip(1)
                .take(2)
                .map(|dir| dir.join(&name))
                .find(|candidate| candidate.is_file())
                .ok_or_else(|| {
                    format!(
                        "the document extractor `{name}` was not found beside {}; install it \
                         there or set {EXTRACTOR_ENV}",
                        exe.display()
                    )
                })
        })
        .as_ref()
        .map_err(Clone::clone)
}

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
    let permit = tokio::time::timeout(MAX_QUEUE_WAIT, Arc::clone(&PERMITS).acquire_owned())
        .await
        .map_err(|_| ExtractError::Busy)?
        .map_err(|_| ExtractError::Busy)?;
    let binary = extractor().map_err(|message| {
        tracing::error!(%message, "Cannot extract documents");
        ExtractError::Unreadable {
            reason: "the server could not start reading the document",
        }
    })?;
    let request =
        serde_json::to_string(&WireRequest::new(declared, &limits)).map_err(|_| CRASHED)?;
    let mut child = Command::new(binary)
        .arg(request)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // A timed-out extraction is killed, not left running.
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            tracing::error!(%error, "Could not start the document extractor");
            ExtractError::Unreadable {
                reason: "the server could not start reading the document",
            }
        })?;
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(CRASHED);
    };
    // Room for the longest text allowed, in JSON (escapes can double it), plus framing.
    let output_cap = u64::try_from(limits.max_chars.saturating_mul(8).saturating_add(64 * 1024))
        .unwrap_or(u64::MAX);
    let exchange = async {
        let write = async {
            // The child may exit before reading everything (a refused header); that is its answer.
            let _ = stdin.write_all(&bytes).await;
            drop(stdin);
        };
        let mut output = Vec::new();
        let mut limited = (&mut stdout).take(output_cap);
        let read = limited.read_to_end(&mut output);
        let ((), read) = tokio::join!(write, read);
        let status = child.wait().await;
        (read, status, output)
    };
    let (read, status, mut output) = match tokio::time::timeout(limits.timeout, exchange).await {
        Ok(done) => done,
        Err(_) => {
            tracing::warn!(
                timeout_ms = limits.timeout.as_millis() as u64,
                "Document extraction timed out"
            );
            return Err(ExtractError::TimedOut);
        }
    };
    drop(permit);
    let result = match (read, status) {
        (Ok(_), Ok(status)) if status.success() => serde_json::from_slice::<WireResult>(&output)
            .map(Into::into)
            .unwrap_or(Err(CRASHED)),
        (_, status) => {
            // A crash (stack overflow, a limit hit, a panic): the document is what broke it.
            tracing::warn!(status = ?status.ok(), bytes = bytes.len(), "Document extractor failed; the upload is refused as unreadable");
            Err(CRASHED)
        }
    };
    // The output held the document's text.
    zeroize::Zeroize::zeroize(&mut output);
    result
}

/// The subprocess's side: applies the resource limits, reads the document from `input` and
/// returns the JSON to print. An `Err` is a usage error (a bad request argument).
pub fn run_subprocess(request: &str, input: impl Read) -> Result<Vec<u8>, String> {
    let request: WireRequest =
        serde_json::from_str(request).map_err(|e| format!("bad request argument: {e}"))?;
    let limits = request.limits();
    let cpu_seconds = limits.timeout.as_secs().saturating_add(1);
    // Best effort: where a limit cannot be set, the producer's timeout still applies.
    let _ = rlimit::setrlimit(rlimit::Resource::AS, MAX_ADDRESS_SPACE, MAX_ADDRESS_SPACE);
    let _ = rlimit::setrlimit(rlimit::Resource::CPU, cpu_seconds, cpu_seconds);
    let _ = rlimit::setrlimit(rlimit::Resource::FSIZE, 0, 0);
    let _ = rlimit::setrlimit(rlimit::Resource::CORE, 0, 0);

    let cap = u64::try_from(limits.max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut bytes = Vec::new();
    input
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the document: {e}"))?;
    let declared = request.declared.map(DocumentKind::from);
    // pdf_oxide recurses on nested objects; a big stack turns most deep files into results, and
    // the rest into an abort of this process only.
    let result = std::thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || extract_declared(&bytes, declared, &limits))
        .map_err(|e| format!("cannot start the extraction thread: {e}"))?
        .join()
        .unwrap_or(Err(CRASHED));
    serde_json::to_vec(&WireResult::from(result))
        .map_err(|e| format!("cannot encode the result: {e}"))
}

const STACK_SIZE: usize = 64 * 1024 * 1024;
