//! `letterbox-admin`, run as an operator would, against the real Vault.

use std::process::Command;

use serde_json::{Value, json};

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
