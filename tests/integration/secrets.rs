//! The LLM key lives in Vault: the provider must receive exactly that key, and a wrong key must
//! come back to the client as a clear error, not a letter.

use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;
use vaultrs::api::auth::approle::requests::SetAppRoleRequest;

use letterbox_consumer::ConsumerSettings;

use crate::helpers::{
    Options, TestApp, clean_up, consumer_settings, job_description, metric, put_key,
    spawn_app_with, vault_client,
};

fn request() -> serde_json::Value {
    json!({
        "resume_text": "Ada Quinlan\nRust engineer, RabbitMQ, PostgreSQL, Kubernetes",
        "job_description": job_description(),
    })
}

/// A worker configuration for `app` that logs in with `role` instead of a token.
fn settings_with(app: &TestApp, role: &AppRole) -> ConsumerSettings {
    let mut settings = consumer_settings(&app.queue, &app.key_path, &app.stub.base_url, 4);
    settings.vault.vault_token = None;
    settings.vault.vault_role_id = Some(role.role_id.clone());
    settings.vault.vault_secret_id = Some(SecretString::from(role.secret_id.clone()));
    settings.vault.vault_approle_mount = role.mount.clone();
    settings
}

/// An AppRole on its own auth mount whose policy may read `secret/<readable>`; removed on drop.
struct AppRole {
    mount: String,
    policy: String,
    role_id: String,
    secret_id: String,
}

impl AppRole {
    async fn reading(readable: &str) -> Self {
        Self::reading_with_ttl(readable, "10m", "20m").await
    }

    /// An AppRole whose tokens live `ttl` and can be renewed up to `max_ttl`.
    async fn reading_with_ttl(readable: &str, ttl: &str, max_ttl: &str) -> Self {
        let client = vault_client();
        let id = Uuid::new_v4().simple().to_string();
        let mount = format!("approle-test-{id}");
        let policy = format!("letterbox-test-{id}");
        vaultrs::sys::auth::enable(&client, &mount, "approle", None)
            .await
            .unwrap();
        // The key it may read, and the operators' token records every worker loads to guard its
        // metrics (kept beside each test's key: see helpers::tokens_path).
        let tokens = readable.rsplit_once('/').map_or(readable, |(dir, _)| dir);
        let rules = format!(
            "path \"secret/data/{readable}\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/metadata/{tokens}/+\" {{ capabilities = [\"list\"] }}\n\
             path \"secret/metadata/{tokens}/+/monitor\" {{ capabilities = [\"list\"] }}\n\
             path \"secret/metadata/{tokens}/+/admin\" {{ capabilities = [\"list\"] }}\n\
             path \"secret/data/{tokens}/+/monitor/*\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/data/{tokens}/+/admin/*\" {{ capabilities = [\"read\"] }}\n\
             path \"transit/datakey/plaintext/letterbox-payload\" {{ capabilities = [\"update\"] }}\n\
             path \"transit/decrypt/letterbox-payload\" {{ capabilities = [\"update\"] }}"
        );
        vaultrs::sys::policy::set(&client, &policy, &rules)
            .await
            .unwrap();
        vaultrs::auth::approle::role::set(
            &client,
            &mount,
            "consumer",
            Some(
                SetAppRoleRequest::builder()
                    .token_policies(vec![policy.clone()])
                    .token_ttl(ttl)
                    .token_max_ttl(max_ttl),
            ),
        )
        .await
        .unwrap();
        let role_id = vaultrs::auth::approle::role::read_id(&client, &mount, "consumer")
            .await
            .unwrap()
            .role_id;
        let secret_id =
            vaultrs::auth::approle::role::secret::generate(&client, &mount, "consumer", None)
                .await
                .unwrap()
                .secret_id;
        Self {
            mount,
            policy,
            role_id,
            secret_id,
        }
    }
}

impl Drop for AppRole {
    fn drop(&mut self) {
        let (mount, policy) = (self.mount.clone(), self.policy.clone());
        clean_up(async move {
            let client = vault_client();
            let _ = vaultrs::sys::auth::disable(&client, &mount).await;
            let _ = vaultrs::sys::policy::delete(&client, &policy).await;
        });
    }
}

#[tokio::test]
async fn the_llm_receives_the_key_stored_in_vault() {
    let app = spawn_app_with(Options::default()).await;
    let answer = app.post_json(&request()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(app.stub.requests()[0].authorized);
    app.stop().await;
}

#[tokio::test]
async fn a_key_the_provider_rejects_is_a_502_and_never_echoed() {
    let options = Options {
        vault_key: "not-the-providers-key".into(),
        ..Options::default()
    };
    let app = spawn_app_with(options).await;
    let answer = app.post_json(&request()).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"error": {"code": "llm_failed", "message": "the LLM provider rejected Letterbox's API key (401)"}})
    );
    assert!(!app.stub.requests()[0].authorized);
    app.stop().await;
}

#[tokio::test]
async fn a_worker_logged_in_with_approle_reads_the_key_its_policy_allows() {
    let mut app = spawn_app_with(Options::without_workers()).await;
    let role = AppRole::reading(&app.key_path).await;
    app.add_consumer(settings_with(&app, &role)).await.unwrap();

    let answer = app.post_json(&request()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(app.stub.requests()[0].authorized);
    app.stop().await;
}

#[tokio::test]
async fn a_policy_that_forbids_the_key_path_stops_the_worker_with_a_configuration_error() {
    let mut app = spawn_app_with(Options::without_workers()).await;
    let role = AppRole::reading("letterbox-tests/some-other-path").await;
    let error = app
        .add_consumer(settings_with(&app, &role))
        .await
        .err()
        .unwrap();
    assert_eq!(
        format!("{error:#}"),
        format!(
            "cannot read the LLM key: Vault refused access to secret/{} (403): the token or AppRole \
             lacks a policy that allows reading it; this is a configuration error",
            app.key_path
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn a_missing_secret_stops_the_worker_and_says_where_it_looked() {
    let mut app = spawn_app_with(Options::without_workers()).await;
    let settings = consumer_settings(
        &app.queue,
        "letterbox-tests/nothing-here",
        &app.stub.base_url,
        4,
    );
    let error = app.add_consumer(settings).await.err().unwrap();
    assert_eq!(
        format!("{error:#}"),
        "cannot read the LLM key: no secret at secret/letterbox-tests/nothing-here in Vault (404): \
         write it first, or fix the path"
    );
    app.stop().await;
}

#[tokio::test]
async fn wrong_approle_credentials_are_refused_at_start_up() {
    let mut app = spawn_app_with(Options::without_workers()).await;
    let role = AppRole::reading(&app.key_path).await;
    let mut settings = settings_with(&app, &role);
    settings.vault.vault_secret_id = Some(SecretString::from("not-the-secret-id".to_owned()));
    let error = app.add_consumer(settings).await.err().unwrap();
    let message = format!("{error:#}");
    assert!(
        message.starts_with("could not connect to Vault: AppRole login failed: Vault answered 400"),
        "{message}"
    );
    assert!(!message.contains("not-the-secret-id"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn rotating_the_llm_key_under_load_fails_no_job() {
    let app = spawn_app_with(Options {
        latency: std::time::Duration::from_millis(150),
        ..Options::default()
    })
    .await;
    let rotated = format!("rotated-{}", Uuid::new_v4().simple());
    let requests = 24;
    let load = futures_util::future::join_all((0..requests).map(|i| {
        let app = &app;
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(40 * i)).await;
            app.post_json(&request()).await
        }
    }));
    // Mid-load: a new version in Vault, then the old key revoked at the provider. Workers still
    // hold the old key in their cache, so the next calls are refused with 401 and retried.
    let rotate = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        put_key(&app.key_path, &rotated).await;
        app.stub.set_key(rotated.clone());
    };
    let (answers, ()) = tokio::join!(load, rotate);
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let calls = app.stub.requests();
    let authorized = calls.iter().filter(|call| call.authorized).count();
    let refused = calls.len() - authorized;
    assert_eq!(authorized, answers.len(), "one accepted call per letter");
    assert!(
        refused >= 1,
        "no call used the revoked key, so the retry was never exercised"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_new_key_version_in_vault_is_used_once_the_cache_expires() {
    let app = spawn_app_with(Options {
        secret_cache_ttl_secs: 1,
        ..Options::default()
    })
    .await;
    assert_eq!(app.post_json(&request()).await.status, 200);
    let rotated = format!("rotated-{}", Uuid::new_v4().simple());
    put_key(&app.key_path, &rotated).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    app.stub.set_key(rotated);

    let answer = app.post_json(&request()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Picked up through the cache's expiry, not through a refusal and a retry.
    assert!(app.stub.requests().iter().all(|call| call.authorized));

    let (_, text) = app
        .get_text(&format!("http://{}/metrics", app.consumer_metrics[0]))
        .await;
    let age = metric(&text, "letterbox_secret_age_seconds{secret=\"llm_key\"}").unwrap();
    assert!(
        (0.0..=5.0).contains(&age),
        "the key version in use is {age} s old"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_worker_keeps_reading_the_key_past_its_vault_tokens_lifetime() {
    // Tokens live 2 s and at most 4 s: the worker must renew, then log in again.
    let mut app = spawn_app_with(Options::without_workers()).await;
    let role = AppRole::reading_with_ttl(&app.key_path, "2s", "4s").await;
    let mut settings = settings_with(&app, &role);
    settings.secret_cache_ttl_secs = 1;
    app.add_consumer(settings).await.unwrap();
    for _ in 0..4 {
        let answer = app.post_json(&request()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    }
    // Every call read the key anew (1 s cache) with a live token: all four were accepted.
    assert_eq!(
        app.stub
            .requests()
            .iter()
            .filter(|call| call.authorized)
            .count(),
        4
    );
    app.stop().await;
}
