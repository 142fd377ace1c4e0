//! The LLM key lives in Vault: the provider must receive exactly that key, and a wrong key must
//! come back to the client as a clear error, not a letter.

use serde_json::json;

use crate::helpers::{Options, job_description, spawn_app_with};

#[tokio::test]
async fn the_llm_receives_the_key_stored_in_vault() {
    let app = spawn_app_with(Options::default()).await;
    let answer = app
        .post_json(&json!({"resume_text": "Ada Quinlan\nRust engineer, RabbitMQ, PostgreSQL, Kubernetes", "job_description": job_description()}))
        .await;
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
    let answer = app
        .post_json(&json!({"resume_text": "Ada Quinlan\nRust engineer, RabbitMQ, PostgreSQL, Kubernetes", "job_description": job_description()}))
        .await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"error": {"code": "llm_failed", "message": "the LLM provider rejected Letterbox's API key (401)"}})
    );
    assert!(!app.stub.requests()[0].authorized);
    app.stop().await;
}
