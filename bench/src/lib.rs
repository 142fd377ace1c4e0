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
