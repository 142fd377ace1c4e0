//! Preparing a Vault for Letterbox, and auditing what it keeps there. Run by `letterbox-admin`
//! with a privileged token; every step is idempotent.

use std::collections::BTreeMap;

use serde::Serialize;
use vaultrs::api::auth::approle::requests::SetAppRoleRequest;
use vaultrs::api::transit::KeyType;
use vaultrs::api::transit::requests::CreateKeyRequest;
use vaultrs::api::transit::responses::ReadKeyData;
use vaultrs::error::ClientError;

use crate::{SecretStore, VaultError, parse_created_time};

/// The least-privilege policies, as shipped in `vault/policies/`. Paths name the default prefix
/// `letterbox`; `setup` writes them for the prefix it is given.
pub const POLICIES: [(&str, &str); 3] = [
    (
        "producer",
        include_str!("../policies/letterbox-producer.hcl"),
    ),
    (
        "consumer",
        include_str!("../policies/letterbox-consumer.hcl"),
    ),
    ("admin", include_str!("../policies/letterbox-admin.hcl")),
];

/// How long a secret id `setup` issues stays valid: credentials are rotated at least every 90
/// days by running `setup` again and handing processes the new ids.
pub const SECRET_ID_TTL: &str = "2160h";

/// What `setup` prints: one AppRole per process.
#[derive(Debug, Serialize)]
pub struct SetupReport {
    pub approle_mount: String,
    pub roles: BTreeMap<String, RoleCredentials>,
}

#[derive(Debug, Serialize)]
pub struct RoleCredentials {
    pub role_name: String,
    pub policy: String,
    pub role_id: String,
    /// A new secret id, made by this run.
    pub secret_id: String,
}

/// The policy text for `prefix` (paths under `secret/<prefix>/`).
pub fn policy_for(policy: &str, prefix: &str) -> String {
    policy
        .replace("/letterbox/", &format!("/{prefix}/"))
        .replace("letterbox-payload", &payload_key_for(prefix))
}

/// 32 random bytes as hex: the key that signs webhook deliveries.
fn webhook_signing_key() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    // The system's random source; it does not fail on a running Linux system.
    if ring::rand::SystemRandom::new().fill(&mut *bytes).is_err() {
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Each deployment prefix gets its own transit key, so one deployment cannot unwrap another's
/// data keys: `letterbox-payload` for the default prefix.
pub fn payload_key_for(prefix: &str) -> String {
    format!("{prefix}-payload")
}

/// A prefix is a plain name: it ends up in policy paths, where `+` and `*` are wildcards.
pub fn check_prefix(prefix: &str) -> Result<(), VaultError> {
    let valid = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(VaultError::InvalidPath {
            path: format!("prefix {prefix:?}: use letters, digits, - and _"),
        })
    }
}

fn api(error: ClientError) -> VaultError {
    match error {
        ClientError::APIError { code, errors } => VaultError::Api {
            code,
            message: errors.join("; "),
        },
        other => VaultError::Unreachable(crate::describe(&other)),
    }
}

impl SecretStore {
    /// Enables KV v2 at `secret/`, transit with the payload key (auto-rotating every 90 days) and
    /// AppRole; writes the three policies and AppRoles for `prefix`; returns fresh credentials.
    pub async fn setup(
        &self,
        prefix: &str,
        transit_mount: &str,
    ) -> Result<SetupReport, VaultError> {
        check_prefix(prefix)?;
        let payload_key = payload_key_for(prefix);
        let payload_key = payload_key.as_str();
        let client = self.client.read().await;
        let mounts = vaultrs::sys::mount::list(&*client).await.map_err(api)?;
        if !mounts.contains_key("secret/") {
            let mut options = vaultrs::api::sys::requests::EnableEngineRequest::builder();
            options.options(std::collections::HashMap::from([(
                "version".to_owned(),
                "2".to_owned(),
            )]));
            vaultrs::sys::mount::enable(&*client, "secret", "kv", Some(&mut options))
                .await
                .map_err(api)?;
        }
        if !mounts.contains_key(&format!("{transit_mount}/")) {
            vaultrs::sys::mount::enable(&*client, transit_mount, "transit", None)
                .await
                .map_err(api)?;
        }
        if vaultrs::transit::key::read(&*client, transit_mount, payload_key)
            .await
            .is_err()
        {
            vaultrs::transit::key::create(
                &*client,
                transit_mount,
                payload_key,
                Some(
                    CreateKeyRequest::builder()
                        .key_type(KeyType::Aes256Gcm96)
                        .auto_rotate_period("2160h"),
                ),
            )
            .await
            .map_err(api)?;
        }
        // The webhook signing key: made once, kept across runs (receivers hold a copy).
        let webhook = format!("{prefix}/webhook");
        if vaultrs::kv2::read::<serde_json::Value>(&*client, "secret", &webhook)
            .await
            .is_err()
        {
            let key = zeroize::Zeroizing::new(webhook_signing_key());
            let data = std::collections::HashMap::from([("signing_key", key.as_str())]);
            vaultrs::kv2::set(&*client, "secret", &webhook, &data)
                .await
                .map_err(api)?;
        }
        let auths = vaultrs::sys::auth::list(&*client).await.map_err(api)?;
        let approle = "approle";
        if !auths.contains_key(&format!("{approle}/")) {
            vaultrs::sys::auth::enable(&*client, approle, "approle", None)
                .await
                .map_err(api)?;
        }
        let mut roles = BTreeMap::new();
        for (process, text) in POLICIES {
            let name = format!("{prefix}-{process}");
            vaultrs::sys::policy::set(&*client, &name, &policy_for(text, prefix))
                .await
                .map_err(api)?;
            vaultrs::auth::approle::role::set(
                &*client,
                approle,
                &name,
                Some(
                    SetAppRoleRequest::builder()
                        .token_policies(vec![name.clone()])
                        .token_ttl("1h")
                        .token_max_ttl("24h")
                        .secret_id_ttl(SECRET_ID_TTL),
                ),
            )
            .await
            .map_err(api)?;
            let role_id = vaultrs::auth::approle::role::read_id(&*client, approle, &name)
                .await
                .map_err(api)?
                .role_id;
            let secret_id =
                vaultrs::auth::approle::role::secret::generate(&*client, approle, &name, None)
                    .await
                    .map_err(api)?
                    .secret_id;
            roles.insert(
                process.to_owned(),
                RoleCredentials {
                    role_name: name.clone(),
                    policy: name,
                    role_id,
                    secret_id,
                },
            );
        }
        Ok(SetupReport {
            approle_mount: approle.to_owned(),
            roles,
        })
    }

    /// Rotates the transit key; data keys wrapped before still unwrap.
    pub async fn rotate_payload_key(
        &self,
        transit_mount: &str,
        payload_key: &str,
    ) -> Result<(), VaultError> {
        let client = self.client.read().await;
        vaultrs::transit::key::rotate(&*client, transit_mount, payload_key)
            .await
            .map_err(api)
    }

    /// The age of every secret Letterbox uses, from Vault's metadata.
    pub async fn audit(
        &self,
        llm_key: &crate::KvPath,
        transit_mount: &str,
        payload_key: &str,
        now_s: u64,
    ) -> Result<Vec<SecretAge>, VaultError> {
        let client = self.client.read().await;
        let mut ages = Vec::new();
        let metadata = vaultrs::kv2::read_metadata(&*client, &llm_key.mount, &llm_key.path)
            .await
            .map_err(|error| VaultError::from_client(error, llm_key))?;
        let current = metadata.versions.get(&metadata.current_version.to_string());
        let created = current.and_then(|v| parse_created_time(&v.created_time));
        ages.push(SecretAge::new(
            format!("{}/{}", llm_key.mount, llm_key.path),
            "llm_key",
            metadata.current_version,
            created,
            now_s,
        ));
        let key = vaultrs::transit::key::read(&*client, transit_mount, payload_key)
            .await
            .map_err(api)?;
        if let ReadKeyData::Symmetric(versions) = key.keys {
            let latest = versions
                .iter()
                .filter_map(|(v, t)| Some((v.parse::<u64>().ok()?, *t)))
                .max();
            if let Some((version, created)) = latest {
                ages.push(SecretAge::new(
                    format!("{transit_mount}/keys/{payload_key}"),
                    "payload_key",
                    version,
                    Some(created),
                    now_s,
                ));
            }
        }
        Ok(ages)
    }
}

/// One secret and how old its current version is.
#[derive(Debug, Serialize)]
pub struct SecretAge {
    pub path: String,
    pub kind: &'static str,
    pub version: u64,
    pub created_at: Option<u64>,
    pub age_seconds: Option<u64>,
}

impl SecretAge {
    fn new(
        path: String,
        kind: &'static str,
        version: u64,
        created_at: Option<u64>,
        now_s: u64,
    ) -> Self {
        Self {
            path,
            kind,
            version,
            created_at,
            age_seconds: created_at.map(|c| now_s.saturating_sub(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_follow_the_prefix_and_keep_least_privilege() {
        let producer = policy_for(POLICIES[0].1, "acme");
        assert!(producer.contains("path \"secret/data/acme/tokens/*\""));
        assert!(
            !producer.contains("/llm"),
            "the ingress may not read the LLM key"
        );
        let consumer = policy_for(POLICIES[1].1, "acme");
        assert!(consumer.contains("path \"secret/data/acme/llm\""));
        assert!(consumer.contains("path \"secret/data/acme/llm-fallback\""));
        assert!(
            !consumer.contains("tokens/*\""),
            "a worker may not read client tokens"
        );
        assert!(!consumer.contains("tokens/submit"));
    }
}
