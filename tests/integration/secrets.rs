//! The LLM key lives in Vault: the provider must receive exactly that key, and a wrong key must
//! come back to the client as a clear error, not a letter.

use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;
use vaultrs::api::auth::approle::requests::SetAppRoleRequest;

use letterbox_consumer::ConsumerSettings;

use crate::helpers::{
    Options, TestApp, clean_up, consumer_settings, job_description, spawn_app_with, vault_client,
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
    settings.vault_token = None;
    settings.vault_role_id = Some(role.role_id.clone());
    settings.vault_secret_id = Some(SecretString::from(role.secret_id.clone()));
    settings.vault_approle_mount = role.mount.clone();
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
        let client = vault_client();
        let id = Uuid::new_v4().simple().to_string();
        let mount = format!("approle-test-{id}");
        let policy = format!("letterbox-test-{id}");
        vaultrs::sys::auth::enable(&client, &mount, "approle", None)
            .await
            .unwrap();
        let rules = format!("path \"secret/data/{readable}\" {{ capabilities = [\"read\"] }}");
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
                    .token_ttl("10m"),
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
    settings.vault_secret_id = Some(SecretString::from("not-the-secret-id".to_owned()));
    let error = app.add_consumer(settings).await.err().unwrap();
    let message = format!("{error:#}");
    assert!(
        message.starts_with("could not connect to Vault: AppRole login failed: Vault answered 400"),
        "{message}"
    );
    assert!(!message.contains("not-the-secret-id"), "{message}");
    app.stop().await;
}
