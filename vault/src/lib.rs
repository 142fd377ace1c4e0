//! Letterbox's Vault adapter: the only code that knows vaultrs.
//!
//! Workers read the LLM API key from a KV v2 secret. The adapter authenticates (a token, or
//! AppRole), reads a secret field, caches it briefly in memory (moka) so Vault is not on the path
//! of every job, and classifies failures so callers can tell "try again" (unreachable, sealed)
//! from "fix the configuration" (forbidden, missing). Secret values are `SecretString` from the
//! moment they leave the HTTP response, so `Debug` and logs never show them.

pub mod auth;
pub mod payload;
pub mod setup;
pub mod tokens;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::RwLock;
use vaultrs::api::kv2::requests::ReadSecretRequest;
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::tokens::{Role, TokenRecord};

/// How the process proves who it is to Vault.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token given to the process (development and tests).
    Token(SecretString),
    /// AppRole: a role id and a secret id exchanged for a short-lived token at start-up.
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretString,
    },
}

#[derive(Clone)]
pub struct VaultSettings {
    pub addr: String,
    /// A PEM file of CA certificates trusted for an `https://` address, beside the system's.
    pub ca_cert: Option<std::path::PathBuf>,
    pub auth: VaultAuth,
    /// Per-request timeout; vaultrs sets none by default.
    pub timeout: Duration,
    /// How long a secret read is reused before Vault is asked again.
    pub cache_ttl: Duration,
    /// While Vault is unreachable or sealed, how old a value read earlier may be and still be
    /// served (zero: never serve a value Vault could not confirm).
    pub max_staleness: Duration,
}

impl VaultSettings {
    /// Settings from the shared command-line options: AppRole when both its ids are given,
    /// else the token; an error names what is missing.
    pub fn from_args(
        args: &letterbox::settings::VaultArgs,
        cache_ttl: Duration,
    ) -> Result<Self, String> {
        let auth = match (
            &args.vault_role_id,
            &args.vault_secret_id,
            &args.vault_token,
        ) {
            (Some(role_id), Some(secret_id), _) => VaultAuth::AppRole {
                mount: args.vault_approle_mount.clone(),
                role_id: role_id.clone(),
                secret_id: secret_id.clone(),
            },
            (None, None, Some(token)) => VaultAuth::Token(token.clone()),
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err("AppRole needs both VAULT_ROLE_ID and VAULT_SECRET_ID".to_owned());
            }
            (None, None, None) => {
                return Err("set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID".to_owned());
            }
        };
        Ok(Self {
            addr: args.vault_addr.clone(),
            ca_cert: args.vault_cacert.clone(),
            auth,
            timeout: Duration::from_millis(args.vault_timeout_ms),
            cache_ttl,
            max_staleness: Duration::ZERO,
        })
    }
}

/// A field of a KV v2 secret: `secret/letterbox/llm` with field `api_key` is mount `secret`,
/// path `letterbox/llm`, field `api_key` (the CLI's form, without the API's `/data/`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvPath {
    pub mount: String,
    pub path: String,
    pub field: String,
}

impl KvPath {
    pub fn parse(path: &str, field: &str) -> Result<Self, VaultError> {
        let trimmed = path.trim().trim_matches('/');
        let invalid = || VaultError::InvalidPath {
            path: path.to_owned(),
        };
        let (mount, rest) = trimmed.split_once('/').ok_or_else(invalid)?;
        // `secret/data/x` is the HTTP API's spelling of `secret/x`; accept both.
        let rest = rest.strip_prefix("data/").unwrap_or(rest);
        if mount.is_empty() || rest.is_empty() || field.trim().is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            mount: mount.to_owned(),
            path: rest.to_owned(),
            field: field.trim().to_owned(),
        })
    }
}

impl fmt::Display for KvPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} (field {})", self.mount, self.path, self.field)
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum VaultError {
    #[error("VAULT_ADDR {addr:?} is not a valid http(s) URL")]
    InvalidAddress { addr: String },
    #[error("cannot use the CA certificate file {path} (VAULT_CACERT): {reason}")]
    InvalidCa { path: String, reason: String },
    #[error("{path:?} is not a KV v2 path of the form <mount>/<path>")]
    InvalidPath { path: String },
    #[error("Vault is unreachable: {0}")]
    Unreachable(String),
    #[error("Vault is sealed or not ready (503); it will be retried")]
    Sealed,
    #[error(
        "Vault refused access to {path} (403): the token or AppRole lacks a policy that allows \
         reading it; this is a configuration error"
    )]
    Forbidden { path: String },
    #[error("no secret at {path} in Vault (404): write it first, or fix the path")]
    NotFound { path: String },
    #[error("the secret at {path} has no string field {field:?}")]
    MissingField { path: String, field: String },
    #[error("the secret at {path} has an empty field {field:?}: write the key into it")]
    EmptyField { path: String, field: String },
    #[error("AppRole login failed: {0}")]
    Login(String),
    #[error("Vault answered {code}: {message}")]
    Api { code: u16, message: String },
}

impl VaultError {
    /// True when asking again later may succeed without anyone changing the configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Sealed => true,
            Self::Api { code, .. } => *code >= 500 || *code == 429,
            _ => false,
        }
    }

    pub(crate) fn from_client(error: ClientError, path: &KvPath) -> Self {
        let shown = format!("{}/{}", path.mount, path.path);
        match error {
            ClientError::APIError { code: 403, .. } => Self::Forbidden { path: shown },
            ClientError::APIError { code: 404, .. } => Self::NotFound { path: shown },
            ClientError::APIError { code: 503, .. } => Self::Sealed,
            ClientError::APIError { code, errors } => Self::Api {
                code,
                message: errors.join("; "),
            },
            other => Self::Unreachable(describe(&other)),
        }
    }
}

/// Where token records live: `<mount>/<prefix>/<role>/<id>` (KV v2), e.g. `secret/letterbox/tokens`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokensPath {
    pub mount: String,
    pub prefix: String,
}

impl TokensPath {
    pub fn parse(path: &str) -> Result<Self, VaultError> {
        let kv = KvPath::parse(path, "-")?;
        Ok(Self {
            mount: kv.mount,
            prefix: kv.path,
        })
    }

    fn at(&self, role: Role, id: &str) -> KvPath {
        KvPath {
            mount: self.mount.clone(),
            path: format!("{}/{role}/{id}", self.prefix),
            field: String::new(),
        }
    }
}

/// A secret value with what Vault says about its age.
pub struct SecretValue {
    pub value: SecretString,
    pub version: u64,
    /// When this version was written, in seconds since the Unix epoch (from Vault's metadata;
    /// `None` when Vault's timestamp could not be read).
    pub created_at_s: Option<u64>,
}

impl SecretValue {
    /// How old this version is, for rotation checks.
    pub fn age(&self) -> Option<Duration> {
        let created = self.created_at_s?;
        let now = letterbox::time::now_ms() / 1000;
        Some(Duration::from_secs(now.saturating_sub(created)))
    }
}

/// A duration for people: `90days`, `1s`.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// An instant as RFC 3339 to the second, e.g. `2027-03-03T17:00:00Z`.
pub fn format_time(time: std::time::SystemTime) -> String {
    use std::fmt::Write as _;
    // humantime cannot show years past 9999 (its Display fails); say so instead of panicking.
    let mut out = String::new();
    match write!(out, "{}", humantime::format_rfc3339_seconds(time)) {
        Ok(()) => out,
        Err(_) => "after 9999".to_owned(),
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time such as Vault's `created_time`.
pub(crate) fn parse_created_time(text: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Reads secrets from Vault with an in-memory cache.
pub struct SecretStore {
    settings: VaultSettings,
    /// Behind a lock because a re-login replaces the token (`set_token` takes `&mut self`).
    pub(crate) client: RwLock<VaultClient>,
    cache: Cache<KvPath, Arc<SecretValue>>,
    /// The last value Vault gave for each path, and when: served during an outage, up to
    /// `max_staleness` old.
    last_good: std::sync::Mutex<std::collections::HashMap<KvPath, (Arc<SecretValue>, Instant)>>,
    /// Set when Vault failed for a passing reason: until then reads go straight to `last_good`
    /// instead of waiting on a Vault that is down.
    down_until: std::sync::Mutex<Option<Instant>>,
    /// The current AppRole token's lease, which paces its renewal.
    lease_seconds: tokio::sync::Mutex<u64>,
}

/// How long reads skip Vault after it failed for a passing reason.
const OUTAGE_PAUSE: Duration = Duration::from_secs(5);

impl SecretStore {
    /// Builds the client and, for AppRole, logs in. Fails clearly on a bad address or login.
    pub async fn connect(settings: VaultSettings) -> Result<Self, VaultError> {
        let client = build_client(&settings)?;
        let cache = Cache::builder()
            .max_capacity(64)
            .time_to_live(settings.cache_ttl)
            .build();
        let store = Self {
            settings,
            client: RwLock::new(client),
            cache,
            last_good: std::sync::Mutex::new(std::collections::HashMap::new()),
            down_until: std::sync::Mutex::new(None),
            lease_seconds: tokio::sync::Mutex::new(0),
        };
        if matches!(store.settings.auth, VaultAuth::AppRole { .. }) {
            match store.login().await {
                Ok(()) => {}
                // Vault is down, not misconfigured: go on, and log in when it answers (every
                // read that Vault refuses for want of a token logs in first).
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "Vault is not answering; logging in once it does");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(store)
    }

    /// The secret field at `path`, from the cache when fresh. Concurrent misses share one read.
    /// While Vault is unreachable or sealed, the last value it gave is served for up to
    /// `max_staleness`; after that the outage is the caller's error.
    pub async fn read(&self, path: &KvPath) -> Result<Arc<SecretValue>, VaultError> {
        let now = Instant::now();
        let in_outage = self
            .down_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|until| now < until);
        if in_outage && let Some(stale) = self.stale(path, now) {
            return Ok(stale);
        }
        match self.cache.try_get_with_by_ref(path, self.fetch(path)).await {
            Ok(value) => {
                *self
                    .down_until
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                Ok(value)
            }
            Err(error) => {
                let error = (*error).clone();
                if !error.is_transient() {
                    return Err(error);
                }
                let was_down = self
                    .down_until
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .replace(Instant::now() + OUTAGE_PAUSE)
                    .is_some();
                match self.stale(path, Instant::now()) {
                    Some(stale) => {
                        if !was_down {
                            tracing::warn!(%error, path = %path, max_staleness_s = self.settings.max_staleness.as_secs(), "Vault is unavailable; serving the value read earlier");
                        }
                        Ok(stale)
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// The last value read from Vault for `path`, if it is no older than `max_staleness`.
    fn stale(&self, path: &KvPath, now: Instant) -> Option<Arc<SecretValue>> {
        let last_good = self
            .last_good
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (value, read_at) = last_good.get(path)?;
        (now.saturating_duration_since(*read_at) <= self.settings.max_staleness)
            .then(|| Arc::clone(value))
    }

    /// Forgets a cached value, so the next read asks Vault (after the provider refused a key).
    pub async fn invalidate(&self, path: &KvPath) {
        self.cache.invalidate(path).await;
    }

    /// Stores a token's record (never the token).
    pub async fn put_token(&self, at: &TokensPath, record: &TokenRecord) -> Result<(), VaultError> {
        let path = at.at(record.role, &record.id);
        let client = self.client.read().await;
        vaultrs::kv2::set(&*client, &path.mount, &path.path, record)
            .await
            .map(|_| ())
            .map_err(|error| VaultError::from_client(error, &path))
    }

    /// Every token record of the given roles.
    pub async fn list_tokens(
        &self,
        at: &TokensPath,
        roles: &[Role],
    ) -> Result<Vec<TokenRecord>, VaultError> {
        let mut records = Vec::new();
        let client = self.client.read().await;
        for role in roles {
            let dir = KvPath {
                mount: at.mount.clone(),
                path: format!("{}/{role}", at.prefix),
                field: String::new(),
            };
            let ids = match vaultrs::kv2::list(&*client, &dir.mount, &dir.path).await {
                Ok(ids) => ids,
                // No token of this role yet.
                Err(ClientError::APIError { code: 404, .. }) => continue,
                Err(error) => return Err(VaultError::from_client(error, &dir)),
            };
            for id in ids {
                // A sub-folder or a record that is not a token's is skipped, not fatal: one stray
                // entry must not stop every process from reloading (and revoking) the others.
                if id.ends_with('/')
                    || tokens::token_id(&format!("lbx_{id}_{}", "0".repeat(64))).is_none()
                {
                    tracing::warn!(path = %format!("{}/{}", dir.mount, dir.path), "Skipped an entry that is not a token record");
                    continue;
                }
                let path = at.at(*role, &id);
                match vaultrs::kv2::read::<TokenRecord>(&*client, &path.mount, &path.path).await {
                    Ok(record) if record.id == id && record.role == *role => records.push(record),
                    Ok(_) | Err(ClientError::JsonParseError { .. }) => {
                        tracing::warn!(id = %id, "Skipped a token record that does not parse");
                    }
                    // Revoked between the list and the read.
                    Err(ClientError::APIError { code: 404, .. }) => {}
                    Err(error) => return Err(VaultError::from_client(error, &path)),
                }
            }
        }
        Ok(records)
    }

    /// Deletes the token `id`, whatever its role; `false` when there was none.
    pub async fn revoke_token(&self, at: &TokensPath, id: &str) -> Result<bool, VaultError> {
        let client = self.client.read().await;
        for role in Role::ALL {
            let path = at.at(role, id);
            match vaultrs::kv2::read_metadata(&*client, &path.mount, &path.path).await {
                Ok(_) => {
                    vaultrs::kv2::delete_metadata(&*client, &path.mount, &path.path)
                        .await
                        .map_err(|error| VaultError::from_client(error, &path))?;
                    return Ok(true);
                }
                Err(ClientError::APIError { code: 404, .. }) => {}
                Err(error) => return Err(VaultError::from_client(error, &path)),
            }
        }
        Ok(false)
    }

    /// Keeps an AppRole token alive until `shutdown`: renews it at two thirds of its lease and
    /// logs in again when renewal fails (the token reached its maximum TTL, or was revoked).
    /// Returns at once for a token given to the process, which is not ours to renew.
    pub async fn maintain_login(&self, shutdown: letterbox::shutdown::CancellationToken) {
        if !matches!(self.settings.auth, VaultAuth::AppRole { .. }) {
            return;
        }
        loop {
            let lease = Duration::from_secs(*self.lease_seconds.lock().await);
            // A lease of 0 never expires; look again in a while all the same.
            let wait = if lease.is_zero() {
                Duration::from_secs(300)
            } else {
                lease * 2 / 3
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait.max(Duration::from_secs(1))) => {}
            }
            let renewed = {
                let client = self.client.read().await;
                client.renew(None).await
            };
            match renewed {
                Ok(auth) => {
                    *self.lease_seconds.lock().await = auth.lease_duration;
                    tracing::debug!(
                        lease_seconds = auth.lease_duration,
                        "Renewed the Vault token"
                    );
                }
                Err(_) => {
                    if let Err(error) = self.login().await {
                        tracing::warn!(%error, "Could not renew the Vault token or log in again; retrying");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(5)) => {}
                        }
                    }
                }
            }
        }
    }

    async fn fetch(&self, path: &KvPath) -> Result<Arc<SecretValue>, VaultError> {
        let value = match self.fetch_once(path).await {
            // An AppRole token may have lapsed: log in again once, then retry once.
            Err(VaultError::Forbidden { .. })
                if matches!(self.settings.auth, VaultAuth::AppRole { .. }) =>
            {
                self.login().await?;
                self.fetch_once(path).await
            }
            other => other,
        }?;
        self.last_good
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(path.clone(), (Arc::clone(&value), Instant::now()));
        Ok(value)
    }

    async fn fetch_once(&self, path: &KvPath) -> Result<Arc<SecretValue>, VaultError> {
        let request = ReadSecretRequest::builder()
            .mount(path.mount.as_str())
            .path(path.path.as_str())
            .build()
            .map_err(|error| VaultError::InvalidPath {
                path: error.to_string(),
            })?;
        let response = {
            let client = self.client.read().await;
            vaultrs::api::exec_with_result(&*client, request)
                .await
                .map_err(|error| VaultError::from_client(error, path))?
        };
        let shown = || (format!("{}/{}", path.mount, path.path), path.field.clone());
        let value = match response
            .data
            .get(&path.field)
            .and_then(|value| value.as_str())
        {
            None => {
                let (path, field) = shown();
                return Err(VaultError::MissingField { path, field });
            }
            Some("") => {
                let (path, field) = shown();
                return Err(VaultError::EmptyField { path, field });
            }
            Some(value) => SecretString::from(value.to_owned()),
        };
        Ok(Arc::new(SecretValue {
            value,
            version: response.metadata.version,
            created_at_s: parse_created_time(&response.metadata.created_time),
        }))
    }

    /// Logs in again after Vault refused the current token (it was revoked, or lapsed); a no-op
    /// for a token given to the process, which cannot be replaced.
    pub async fn relogin(&self) -> Result<(), VaultError> {
        self.login().await
    }

    async fn login(&self) -> Result<(), VaultError> {
        let VaultAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } = &self.settings.auth
        else {
            return Ok(());
        };
        let mut client = self.client.write().await;
        let auth =
            vaultrs::auth::approle::login(&*client, mount, role_id, secret_id.expose_secret())
                .await
                .map_err(|error| match error {
                    ClientError::APIError { code, .. } => VaultError::Login(format!(
                        "Vault answered {code}; check VAULT_ROLE_ID and VAULT_SECRET_ID"
                    )),
                    other => VaultError::Unreachable(describe(&other)),
                })?;
        client.set_token(&auth.client_token);
        *self.lease_seconds.lock().await = auth.lease_duration;
        tracing::info!(
            lease_seconds = auth.lease_duration,
            "Logged in to Vault with AppRole"
        );
        Ok(())
    }
}

fn build_client(settings: &VaultSettings) -> Result<VaultClient, VaultError> {
    // vaultrs panics on an invalid address; check it first.
    let invalid = || VaultError::InvalidAddress {
        addr: settings.addr.clone(),
    };
    let url = url::Url::parse(&settings.addr).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid());
    }
    let token = match &settings.auth {
        VaultAuth::Token(token) => token.expose_secret().to_owned(),
        VaultAuth::AppRole { .. } => String::new(),
    };
    // Only the CA named in the settings is added to the system's roots: vaultrs would also read
    // VAULT_CAPATH and honour VAULT_SKIP_VERIFY from the environment; certificates are always
    // verified here.
    let ca_certs = match &settings.ca_cert {
        Some(path) => {
            check_ca(path)?;
            vec![path.display().to_string()]
        }
        None => Vec::new(),
    };
    let client_settings = VaultClientSettingsBuilder::default()
        .address(&settings.addr)
        .token(token)
        .timeout(Some(settings.timeout))
        .ca_certs(ca_certs)
        .verify(true)
        .build()
        .map_err(|_| invalid())?;
    VaultClient::new(client_settings).map_err(|error| VaultError::Unreachable(describe(&error)))
}

/// An error with its causes, `outer: inner: innermost`: a failed TLS handshake says why (an
/// unknown issuer, say) only in the innermost one.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A CA file must exist and hold at least one PEM certificate; said at start-up, not at the
/// first failed handshake.
fn check_ca(path: &std::path::Path) -> Result<(), VaultError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let invalid = |reason: String| VaultError::InvalidCa {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|error| invalid(error.to_string()))?;
    let mut certificates = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|error| invalid(error.to_string()))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(invalid("it holds no PEM certificate".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_paths_accept_the_cli_and_api_spellings() {
        let expected = KvPath {
            mount: "secret".into(),
            path: "letterbox/llm".into(),
            field: "api_key".into(),
        };
        assert_eq!(
            KvPath::parse("secret/letterbox/llm", "api_key").unwrap(),
            expected
        );
        assert_eq!(
            KvPath::parse("/secret/data/letterbox/llm/", "api_key").unwrap(),
            expected
        );
        assert!(matches!(
            KvPath::parse("secret", "api_key"),
            Err(VaultError::InvalidPath { .. })
        ));
        assert!(matches!(
            KvPath::parse("secret/x", " "),
            Err(VaultError::InvalidPath { .. })
        ));
    }

    #[test]
    fn a_bad_address_is_an_error_not_a_panic() {
        let settings = VaultSettings {
            addr: "not a url".into(),
            ca_cert: None,
            auth: VaultAuth::Token(SecretString::from("t".to_owned())),
            timeout: Duration::from_secs(1),
            cache_ttl: Duration::from_secs(1),
            max_staleness: Duration::ZERO,
        };
        assert!(matches!(
            build_client(&settings),
            Err(VaultError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_up_front() {
        let settings = |ca: &str| VaultSettings {
            addr: "https://vault.example:8200".into(),
            ca_cert: Some(std::path::PathBuf::from(ca)),
            auth: VaultAuth::Token(SecretString::from("t".to_owned())),
            timeout: Duration::from_secs(1),
            cache_ttl: Duration::from_secs(1),
            max_staleness: Duration::ZERO,
        };
        let missing = build_client(&settings("/nonexistent/ca.pem")).err();
        assert!(matches!(missing, Some(VaultError::InvalidCa { .. })));
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let Err(error) = build_client(&settings(manifest)) else {
            panic!("a file without certificates was accepted");
        };
        assert_eq!(
            error.to_string(),
            format!(
                "cannot use the CA certificate file {manifest} (VAULT_CACERT): it holds no PEM certificate"
            )
        );
    }

    #[test]
    fn vault_creation_times_are_read_to_the_second() {
        assert_eq!(
            parse_created_time("2026-12-03T17:00:00.945319214Z"),
            Some(1_796_317_200)
        );
        assert_eq!(
            parse_created_time("2026-12-03T17:00:00Z"),
            Some(1_796_317_200)
        );
        assert_eq!(parse_created_time("yesterday"), None);
    }

    #[test]
    fn only_outages_are_transient() {
        assert!(VaultError::Sealed.is_transient());
        assert!(VaultError::Unreachable("x".into()).is_transient());
        assert!(!VaultError::Forbidden { path: "p".into() }.is_transient());
        assert!(!VaultError::NotFound { path: "p".into() }.is_transient());
    }
}
