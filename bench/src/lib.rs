//! Tools that stand in for the outside world when Letterbox is tested, demonstrated or measured.
//!
//! - [`stub`]: an OpenAI-compatible chat-completions server that writes a cover letter out of the
//!   prompt it receives, with configurable latency and injected failures. Integration tests run it
//!   in-process; the demo runs it as the `letterbox-stub-llm` binary.
//! - [`pdf`]: a minimal text-only PDF writer, used by `letterbox-examples` to turn
//!   `examples/resume.md` into `examples/resume.pdf` so the upload path has a real PDF to extract.
//! - [`faults`]: the fault-injection suite behind `letterbox-faults`: the real binaries under
//!   load on a broker and a Vault of their own, one fault at a time.
//! - [`load`]: the load generator behind `letterbox-bench`: Letterbox, its broker path alone,
//!   the stub alone and LiteLLM's proxy under the same load, with a table, JSON and plots.

pub mod faults;
pub mod load;
pub mod pdf;
pub mod stub;

use std::path::PathBuf;

/// Why an HTTP exchange got no answer, in the words the reports use.
pub fn failure_reason(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "client timeout"
    } else if error.is_connect() {
        "connection refused"
    } else if error.is_body() || error.is_decode() {
        "body cut"
    } else {
        "connection closed"
    }
}

/// The directory of the Letterbox binaries: `given`, else the one the running binary is in
/// (`target/<profile>/`, where cargo builds them all).
pub fn bin_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("cannot tell where the binaries are")),
    }
}

/// The OpenBao binary: `given`, else the repository's `.venv/bin/bao` (what `script/bootstrap`
/// installs), else `bao` on the PATH.
pub fn bao_binary(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let installed = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/bao"));
        if installed.is_file() {
            installed
        } else {
            PathBuf::from("bao")
        }
    })
}
