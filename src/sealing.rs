//! Payload encryption on the broker, as the adapters see it.
//!
//! Job and reply bodies travel as AES-256-GCM ciphertext. A `Sealer` encrypts under a data key
//! and names that key in a header (the key itself wrapped, so only Vault can unwrap it), with
//! associated data that binds the ciphertext to its job: a body moved onto another job's message
//! does not decrypt. The Vault adapter implements it with the transit engine; the RabbitMQ
//! adapter calls it without knowing Vault.

use std::future::Future;
use std::pin::Pin;

/// The header that carries the wrapped data key of an encrypted body.
pub const KEY_HEADER: &str = "x-letterbox-key";

pub type SealFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SealError>> + Send + 'a>>;

/// An encrypted body and the wrapped key it was encrypted under.
pub struct Sealed {
    pub wrapped_key: String,
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the payload key service is unavailable: {0}")]
    Unavailable(String),
    #[error("the payload could not be decrypted (wrong key, wrong job, or tampered)")]
    Corrupt,
}

impl SealError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

pub trait Sealer: Send + Sync {
    /// Encrypts under the current data key.
    fn seal<'a>(&'a self, aad: &'a [u8], plaintext: &'a [u8]) -> SealFuture<'a, Sealed>;

    /// Encrypts under the data key named by `wrapped_key` (a reply under its job's key).
    fn seal_with<'a>(
        &'a self,
        wrapped_key: &'a str,
        aad: &'a [u8],
        plaintext: &'a [u8],
    ) -> SealFuture<'a, Vec<u8>>;

    /// Decrypts a body sealed under `wrapped_key` with the same associated data.
    fn open<'a>(
        &'a self,
        wrapped_key: &'a str,
        aad: &'a [u8],
        ciphertext: &'a [u8],
    ) -> SealFuture<'a, Vec<u8>>;
}

/// The associated data of a job body: it binds the ciphertext to its job id and to the queue its
/// reply goes to, so a copied body can neither pose as another job nor send its letter elsewhere.
pub fn job_aad(job_id: &str, reply_to: &str) -> Vec<u8> {
    format!("letterbox job {job_id} reply-to {reply_to}").into_bytes()
}

/// The associated data of a reply body: bound to the job, and distinct from the job's own.
pub fn reply_aad(job_id: &str) -> Vec<u8> {
    format!("letterbox reply {job_id}").into_bytes()
}
