//! Envelope encryption of broker payloads with Vault's transit engine.
//!
//! The ingress asks transit for a data key (`transit/datakey/plaintext/<key>`): 32 random bytes,
//! and the same bytes wrapped by the transit key. It encrypts bodies with AES-256-GCM under the
//! plain key and sends the wrapped one along; it asks for a fresh data key every
//! `DATA_KEY_LIFETIME`, so Vault is not on the path of every job. A worker unwraps a key once
//! (`transit/decrypt`) and keeps it in memory for as long as messages under it can be alive.
//! Rotating the transit key changes what new data keys are wrapped with; messages wrapped
//! before still decrypt, since Vault keeps the older key versions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use letterbox::sealing::{SealError, SealFuture, Sealed, Sealer};
use moka::future::Cache;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Mutex;
use vaultrs::api::transit::requests::DataKeyType;

use crate::SecretStore;

/// How long one data key encrypts new messages.
const DATA_KEY_LIFETIME: Duration = Duration::from_secs(300);
/// How long an unwrapped key stays in memory: longer than any message can live on the broker.
const UNWRAPPED_LIFETIME: Duration = Duration::from_secs(2 * 3600);

pub struct TransitSealer {
    store: Arc<SecretStore>,
    mount: String,
    key_name: String,
    random: SystemRandom,
    /// The data key new messages are sealed under, and when it was made.
    current: Mutex<Option<(String, Arc<LessSafeKey>, Instant)>>,
    /// Unwrapped keys by their wrapped form; loaded from Vault once per key.
    unwrapped: Cache<String, Arc<LessSafeKey>>,
}

impl TransitSealer {
    pub fn new(store: Arc<SecretStore>, mount: &str, key_name: &str) -> Self {
        Self {
            store,
            mount: mount.to_owned(),
            key_name: key_name.to_owned(),
            random: SystemRandom::new(),
            current: Mutex::new(None),
            unwrapped: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(UNWRAPPED_LIFETIME)
                .build(),
        }
    }

    /// Checks that the transit key exists and answers, so a misconfiguration shows at start-up.
    /// Whether this process may unwrap data keys, for a process that never makes one (a worker
    /// seals replies under its job's key): Vault is asked to unwrap a key it never made, which it
    /// refuses with 400 when the key exists and the policy allows, and with 403 otherwise.
    pub async fn check_unwrap(&self) -> Result<(), SealError> {
        let mut probe = [0u8; 44];
        self.random
            .fill(&mut probe)
            .map_err(|_| SealError::Unavailable("no system randomness".into()))?;
        let ciphertext = format!(
            "vault:v1:{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, probe)
        );
        let result = {
            let client = self.store.client.read().await;
            vaultrs::transit::data::decrypt(
                &*client,
                &self.mount,
                &self.key_name,
                &ciphertext,
                None,
            )
            .await
        };
        match result {
            Err(vaultrs::error::ClientError::APIError { code: 400, errors })
                if !errors.iter().any(|error| error.contains("not found")) =>
            {
                Ok(())
            }
            Err(vaultrs::error::ClientError::APIError { code, errors }) => Err(
                SealError::Unavailable(format!("Vault answered {code}: {}", errors.join("; "))),
            ),
            Err(other) => Err(SealError::Unavailable(crate::describe(&other))),
            Ok(_) => Err(SealError::Unavailable(
                "Vault unwrapped a random key; this is not a transit key Letterbox made".into(),
            )),
        }
    }

    pub async fn check(&self) -> Result<(), SealError> {
        let sealed = self.seal_now(b"check", b"check").await?;
        self.unwrapped.invalidate(&sealed.wrapped_key).await;
        self.open_now(&sealed.wrapped_key, b"check", &sealed.ciphertext)
            .await
            .map(|_| ())
    }

    async fn current_key(&self) -> Result<(String, Arc<LessSafeKey>), SealError> {
        let mut current = self.current.lock().await;
        if let Some((wrapped, key, made)) = current.as_ref()
            && made.elapsed() < DATA_KEY_LIFETIME
        {
            return Ok((wrapped.clone(), Arc::clone(key)));
        }
        let mut attempt = 0;
        let response = loop {
            let result = {
                let client = self.store.client.read().await;
                vaultrs::transit::generate::data_key(
                    &*client,
                    &self.mount,
                    &self.key_name,
                    DataKeyType::Plaintext,
                    None,
                )
                .await
            };
            match result {
                Ok(response) => break response,
                // The process's Vault token may have been revoked: log in again once.
                Err(vaultrs::error::ClientError::APIError { code: 403, .. }) if attempt == 0 => {
                    attempt += 1;
                    let _ = self.store.relogin().await;
                }
                Err(error) => return Err(SealError::Unavailable(crate::describe(&error))),
            }
        };
        let plaintext = response
            .plaintext
            .ok_or(SealError::Unavailable("no plaintext data key".into()))?;
        let key = Arc::new(aes_key(&plaintext)?);
        self.unwrapped
            .insert(response.ciphertext.clone(), Arc::clone(&key))
            .await;
        *current = Some((
            response.ciphertext.clone(),
            Arc::clone(&key),
            Instant::now(),
        ));
        Ok((response.ciphertext, key))
    }

    async fn key_for(&self, wrapped: &str) -> Result<Arc<LessSafeKey>, SealError> {
        let store = Arc::clone(&self.store);
        let (mount, name, wrapped_owned) = (
            self.mount.clone(),
            self.key_name.clone(),
            wrapped.to_owned(),
        );
        self.unwrapped
            .try_get_with_by_ref(wrapped, async move {
                let decrypt = || async {
                    let client = store.client.read().await;
                    vaultrs::transit::data::decrypt(&*client, &mount, &name, &wrapped_owned, None)
                        .await
                };
                let mut result = decrypt().await;
                if matches!(
                    result,
                    Err(vaultrs::error::ClientError::APIError { code: 403, .. })
                ) {
                    // The process's Vault token may have been revoked: log in again once.
                    let _ = store.relogin().await;
                    result = decrypt().await;
                }
                let response = result.map_err(|error| match error {
                    // Vault refuses ciphertext it did not make.
                    vaultrs::error::ClientError::APIError { code: 400, .. } => SealError::Corrupt,
                    other => SealError::Unavailable(crate::describe(&other)),
                })?;
                aes_key(&response.plaintext).map(Arc::new)
            })
            .await
            .map_err(|error| (*error).clone())
    }

    fn encrypt(
        &self,
        key: &LessSafeKey,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Unavailable("no system randomness".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        // Encrypted in place: the buffer holds ciphertext when this returns.
        let mut body = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| SealError::Corrupt)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    async fn seal_now(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, SealError> {
        let (wrapped_key, key) = self.current_key().await?;
        let ciphertext = self.encrypt(&key, aad, plaintext)?;
        Ok(Sealed {
            wrapped_key,
            ciphertext,
        })
    }

    async fn open_now(
        &self,
        wrapped: &str,
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        if ciphertext.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Corrupt);
        }
        let key = self.key_for(wrapped).await?;
        let (nonce, body) = ciphertext.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
        // Decrypted in place: this copy holds plaintext, so it is wiped once returned.
        let mut body = zeroize::Zeroizing::new(body.to_vec());
        let plain = key
            .open_in_place(nonce, Aad::from(aad), &mut body)
            .map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

fn aes_key(base64_key: &str) -> Result<LessSafeKey, SealError> {
    let bytes = STANDARD
        .decode(base64_key)
        .map_err(|_| SealError::Corrupt)?;
    let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::Corrupt)?;
    Ok(LessSafeKey::new(key))
}

impl Sealer for TransitSealer {
    fn seal<'a>(&'a self, aad: &'a [u8], plaintext: &'a [u8]) -> SealFuture<'a, Sealed> {
        Box::pin(self.seal_now(aad, plaintext))
    }

    fn seal_with<'a>(
        &'a self,
        wrapped_key: &'a str,
        aad: &'a [u8],
        plaintext: &'a [u8],
    ) -> SealFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let key = self.key_for(wrapped_key).await?;
            self.encrypt(&key, aad, plaintext)
        })
    }

    fn open<'a>(
        &'a self,
        wrapped_key: &'a str,
        aad: &'a [u8],
        ciphertext: &'a [u8],
    ) -> SealFuture<'a, Vec<u8>> {
        Box::pin(self.open_now(wrapped_key, aad, ciphertext))
    }
}
