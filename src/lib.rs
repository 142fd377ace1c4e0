//! The shared vocabulary of Letterbox.
//!
//! The ingress (`letterbox-producer`) and the workers (`letterbox-consumer`) agree on what a job and
//! a reply are, how they travel (MessagePack), how settings are named, how latency is measured and
//! how a process shuts down. Everything that both sides must agree on lives here, once.

pub mod backoff;
pub mod codec;
pub mod env;
pub mod job;
pub mod sealing;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod time;

pub use job::{
    FailureCode, Job, JobFailure, Length, Letter, LetterOptions, Outcome, Piece, Reply, Tone,
};

/// What a binary's `main` does with a start-up or run error: one clear line with its causes
/// (no backtrace, whatever `RUST_BACKTRACE` says) and exit status 1.
pub fn exit_on_error(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Installs the process-wide TLS crypto provider (ring) that reqwest and the Vault client use.
/// Idempotent; every binary calls it first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
