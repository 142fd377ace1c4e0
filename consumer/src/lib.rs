//! letterbox-consumer: the worker.
//!
//! Any number of worker processes compete for jobs on the quorum queue. For each job a worker
//! reads the LLM key from Vault (cached), renders the versioned prompt, calls the LLM (an
//! OpenAI-compatible API or Anthropic's, with an optional fallback provider) and publishes the
//! reply to the job's reply queue; only then is the job acked (`worker`).

mod app;
mod limiter;
mod llm;
mod metrics;
mod prompt;
mod settings;
mod worker;

pub use app::ConsumerApp;
pub use llm::{LlmClient, LlmError, LlmProvider};
pub use settings::{ConsumerSettings, LlmTarget};
