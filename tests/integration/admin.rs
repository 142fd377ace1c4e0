//! `letterbox-admin`, run as an operator would, against the real Vault.

use std::process::Command;

use serde_json::{Value, json};

use letterbox_vault::tokens;

use crate::helpers::{binary, job_description, spawn_app, tokens_path, vault};

fn admin(tokens: &str, args: &[&str]) -> (bool, String, String) {
    let (vault_addr, vault_token) = vault();
    let output = Command::new(binary("letterbox-admin"))
        .env_clear()
        .env("VAULT_ADDR", vault_addr)
        .env("VAULT_TOKEN", vault_token)
        .env("LETTERBOX_TOKENS_PATH", tokens)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn tokens_created_listed_and_revoked_with_the_admin_tool_take_effect() {
    let app = spawn_app().await;
    let path = tokens_path(&app.key_path);
    let (ok, out, err) = admin(
        &path,
        &[
            "tokens", "create", "--role", "submit", "--name", "web app", "--ttl", "30d", "--rate",
            "30/min", "--json",
        ],
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["role"], "submit");
    assert!(token.starts_with(&format!("lbx_{id}_")));
    assert_eq!(token.len(), 85);

    let (ok, out, _) = admin(&path, &["tokens", "list", "--json"]);
    assert!(ok);
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    let row = listed.iter().find(|row| row["id"] == id).unwrap();
    assert_eq!(row["role"], "submit");
    assert_eq!(row["name"], "web app");
    assert_eq!(row["rate"], "30/min");
    assert_eq!(row["expired"], false);
    assert!(
        !out.contains(&token[21..]),
        "the list shows a token's secret"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let body = json!({"resume_text": "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL", "job_description": job_description()});
    let letters = format!("{}/v1/cover-letters", app.base);
    let response = app
        .http
        .post(&letters)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let (ok, _, err) = admin(&path, &["tokens", "revoke", &id]);
    assert!(ok, "{err}");
    let (ok, _, err) = admin(&path, &["tokens", "revoke", &id]);
    assert!(!ok);
    assert!(err.contains(&format!("no token with id {id}")), "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let response = app
        .http
        .post(&letters)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    app.stop().await;
}

/// Runs `letterbox-admin` with the root token and no tokens path override.
fn admin_root(args: &[&str]) -> (bool, String, String) {
    admin("secret/letterbox/tokens", args)
}

fn store_for(role: &Value) -> letterbox_vault::VaultSettings {
    let (vault_addr, _) = vault();
    let args = letterbox::settings::VaultArgs {
        vault_addr,
        vault_token: None,
        vault_role_id: Some(role["role_id"].as_str().unwrap().to_owned()),
        vault_secret_id: Some(secrecy::SecretString::from(
            role["secret_id"].as_str().unwrap().to_owned(),
        )),
        ..letterbox::settings::VaultArgs::default()
    };
    letterbox_vault::VaultSettings::from_args(&args, std::time::Duration::from_secs(1)).unwrap()
}

/// The webhook key's version: a second `setup` must not replace it.
async fn signing_version_after_second_setup(prefix: &str) -> u64 {
    vaultrs::kv2::read_metadata(
        &crate::helpers::vault_client(),
        "secret",
        &format!("{prefix}/webhook"),
    )
    .await
    .unwrap()
    .current_version
}

#[tokio::test]
async fn setup_makes_approles_that_can_do_their_job_and_nothing_more() {
    use letterbox::sealing::{SealError, Sealer};
    use letterbox_vault::payload::TransitSealer;
    use letterbox_vault::tokens::Role;
    use letterbox_vault::{KvPath, SecretStore, TokensPath, VaultError};
    use std::sync::Arc;

    letterbox::install_crypto_provider();
    let prefix = format!(
        "lbx-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let (ok, out, err) = admin_root(&["setup", "--prefix", &prefix, "--json"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let roles = &report["roles"];
    assert_eq!(roles["producer"]["policy"], format!("{prefix}-producer"));
    // Idempotent: a second run succeeds and issues new secret ids.
    let (ok, again, err) = admin_root(&["setup", "--prefix", &prefix, "--json"]);
    assert!(ok, "{err}");
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        again["roles"]["consumer"]["role_id"],
        roles["consumer"]["role_id"]
    );
    // Secret ids are credentials too: each expires after 90 days, and tokens within a day.
    for process in ["producer", "consumer", "admin"] {
        let role = vaultrs::auth::approle::role::read(
            &crate::helpers::vault_client(),
            "approle",
            &format!("{prefix}-{process}"),
        )
        .await
        .unwrap();
        assert_eq!(
            (role.secret_id_ttl, role.token_ttl, role.token_max_ttl),
            (90 * 24 * 3600, 3600, 24 * 3600),
            "{process}"
        );
    }

    crate::helpers::put_key(&format!("{prefix}/llm"), "sk-test-not-real").await;
    let llm = KvPath::parse(&format!("secret/{prefix}/llm"), "api_key").unwrap();
    let tokens = TokensPath::parse(&format!("secret/{prefix}/tokens")).unwrap();

    let producer = Arc::new(
        SecretStore::connect(store_for(&roles["producer"]))
            .await
            .unwrap(),
    );
    let consumer = Arc::new(
        SecretStore::connect(store_for(&roles["consumer"]))
            .await
            .unwrap(),
    );
    let admin_role = SecretStore::connect(store_for(&roles["admin"]))
        .await
        .unwrap();

    // The ingress reads token records but never the LLM key.
    assert!(producer.list_tokens(&tokens, &Role::ALL).await.is_ok());
    // It reads the webhook signing key setup made: 32 random bytes as hex, kept across runs.
    let webhook = KvPath::parse(&format!("secret/{prefix}/webhook"), "signing_key").unwrap();
    let signing = producer.read(&webhook).await.unwrap();
    let signing = secrecy::ExposeSecret::expose_secret(&signing.value).to_owned();
    assert_eq!(signing.len(), 64);
    assert!(signing.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(signing_version_after_second_setup(&prefix).await, 1);
    assert!(matches!(
        consumer.read(&webhook).await,
        Err(VaultError::Forbidden { .. })
    ));
    assert!(matches!(
        producer.read(&llm).await,
        Err(VaultError::Forbidden { .. })
    ));
    // A worker reads the key and operators' tokens, never clients' tokens.
    assert_eq!(consumer.read(&llm).await.unwrap().version, 1);
    assert!(
        consumer
            .list_tokens(&tokens, &[Role::Monitor, Role::Admin])
            .await
            .is_ok()
    );
    let submit = tokens::generate(
        Role::Submit,
        "t",
        std::time::Duration::from_secs(60),
        None,
        0,
    )
    .unwrap();
    admin_role.put_token(&tokens, &submit.record).await.unwrap();
    assert!(matches!(
        consumer.list_tokens(&tokens, &[Role::Submit]).await,
        Err(VaultError::Forbidden { .. })
    ));
    // The admin manages tokens and sees the key's age, not its value.
    assert!(matches!(
        admin_role.read(&llm).await,
        Err(VaultError::Forbidden { .. })
    ));
    assert!(
        admin_role
            .revoke_token(&tokens, &submit.record.id)
            .await
            .unwrap()
    );
    let ages = admin_role
        .audit(
            &llm,
            "transit",
            &format!("{prefix}-payload"),
            letterbox::time::now_ms() / 1000,
        )
        .await
        .unwrap();
    assert_eq!(
        ages.iter().map(|a| a.kind).collect::<Vec<_>>(),
        ["llm_key", "payload_key"]
    );
    assert!(ages[0].age_seconds.unwrap() < 60);

    // Jobs sealed by the ingress open in a worker.
    let payload_key = format!("{prefix}-payload");
    let sealed = TransitSealer::new(producer, "transit", &payload_key)
        .seal(b"job", b"body")
        .await
        .unwrap();
    let worker_sealer = TransitSealer::new(consumer, "transit", &payload_key);
    let opened = worker_sealer
        .open(&sealed.wrapped_key, b"job", &sealed.ciphertext)
        .await
        .unwrap();
    assert_eq!(opened, b"body");
    // A worker seals replies under its job's key and may make no data key of its own (which
    // would let a worker's credentials forge jobs); its start-up check needs none.
    assert_eq!(worker_sealer.check_unwrap().await, Ok(()));
    let made = worker_sealer.seal(b"job", b"forged").await.err();
    assert!(
        matches!(&made, Some(SealError::Unavailable(message)) if message.contains("403")),
        "{made:?}"
    );
    let missing = TransitSealer::new(
        Arc::new(
            SecretStore::connect(store_for(&roles["consumer"]))
                .await
                .unwrap(),
        ),
        "transit",
        "no-such-key",
    );
    assert!(missing.check_unwrap().await.is_err());

    // The audit passes under a 90-day limit and fails under a zero one.
    let path = format!("secret/{prefix}/llm");
    let (ok, out, _) = admin_root(&["keys", "audit", "--llm-key-path", &path, "--json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&out).unwrap().len(), 2);
    let (ok, _, err) = admin_root(&["keys", "audit", "--llm-key-path", &path, "--max-age", "0s"]);
    assert!(!ok);
    assert!(err.contains("older than 0s (rotate them)"), "{err}");

    // A prefix must be a plain name: it ends up in policy paths, where + and * are wildcards.
    let (ok, _, err) = admin_root(&["setup", "--prefix", "+"]);
    assert!(!ok);
    assert!(err.contains("use letters, digits, - and _"), "{err}");

    crate::helpers::delete_secret(&format!("{prefix}/llm")).await;
    crate::helpers::delete_secret(&format!("{prefix}/webhook")).await;
    let client = crate::helpers::vault_client();
    for process in ["producer", "consumer", "admin"] {
        let name = format!("{prefix}-{process}");
        let _ = vaultrs::auth::approle::role::delete(&client, "approle", &name).await;
        let _ = vaultrs::sys::policy::delete(&client, &name).await;
    }
}
