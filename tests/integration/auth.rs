//! Who may call what: bearer tokens, their roles, expiry, revocation and rate limits.

use std::time::Duration;

use letterbox_vault::tokens::{Rate, Role};
use letterbox_vault::{TokensPath, tokens};
use serde_json::{Value, json};

use crate::helpers::{
    Options, admin_store, create_token, job_description, spawn_app, spawn_app_with, tokens_path,
};

fn request() -> Value {
    json!({
        "resume_text": "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL",
        "job_description": job_description(),
    })
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn every_endpoint_but_the_health_checks_needs_a_token_of_the_right_role() {
    let app = spawn_app().await;
    let letters = format!("{}/v1/cover-letters", app.base);
    let metrics = format!("{}/metrics", app.base);
    let stats = format!("{}/v1/stats", app.base);
    let worker_metrics = format!("http://{}/metrics", app.consumer_metrics[0]);

    let anonymous = app
        .http
        .post(&letters)
        .json(&request())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        status_and_code(anonymous).await,
        (401, "unauthorized".to_owned())
    );
    let forged = format!("lbx_{}_{}", "0".repeat(16), "0".repeat(64));
    let response = app
        .http
        .post(&letters)
        .bearer_auth(&forged)
        .json(&request())
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(response).await,
        (401, "unauthorized".to_owned())
    );

    let response = app
        .http
        .post(&letters)
        .bearer_auth(&app.monitor_token)
        .json(&request())
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(response).await,
        (403, "forbidden".to_owned())
    );
    // The ingress knows every token; a worker loads only operators' tokens, so a client's token
    // is unknown there.
    for (url, submit_status, submit_code) in [
        (&metrics, 403, "forbidden"),
        (&stats, 403, "forbidden"),
        (&worker_metrics, 401, "unauthorized"),
    ] {
        let get = |token: Option<&str>| {
            let request = app.http.get(url.as_str());
            let request = match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            async move { request.send().await.unwrap() }
        };
        assert_eq!(
            status_and_code(get(None).await).await,
            (401, "unauthorized".to_owned()),
            "{url}"
        );
        assert_eq!(
            status_and_code(get(Some(&app.submit_token)).await).await,
            (submit_status, submit_code.to_owned()),
            "{url}"
        );
        assert_eq!(
            get(Some(&app.monitor_token)).await.status().as_u16(),
            200,
            "{url}"
        );
    }
    for open in ["healthz", "readyz"] {
        let response = app
            .http
            .get(format!("{}/{open}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{open}");
    }
    assert_eq!(app.post_json(&request()).await.status, 200);
    assert_eq!(
        app.stub.request_count(),
        1,
        "only the authorised request reached the LLM"
    );
    // The monitor's JSON view counts what happened so far: one letter, and every refusal.
    let view: Value = app
        .http
        .get(&stats)
        .bearer_auth(&app.monitor_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["ready"], true);
    assert_eq!(view["latency_ms"]["end_to_end"]["count"], 1);
    assert_eq!(view["latency_ms"]["llm"]["count"], 1);
    // 200: /metrics, /v1/stats, the two health checks and the letter; 401: three anonymous and
    // one forged; 403: the monitor's letter, the client's /metrics and /v1/stats.
    assert_eq!(
        view["responses"],
        json!({"200": 5, "401": 4, "403": 3}),
        "{view}"
    );

    // An admin token may do what both other roles may.
    let admin = create_token(&app.key_path, Role::Admin, "1h", None).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let response = app
        .http
        .get(&metrics)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = app
        .http
        .post(&letters)
        .bearer_auth(&admin)
        .json(&request())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_within_seconds_without_a_restart() {
    let app = spawn_app().await;
    assert_eq!(app.post_json(&request()).await.status, 200);
    let id = tokens::token_id(&app.submit_token).unwrap().to_owned();
    let path = TokensPath::parse(&tokens_path(&app.key_path)).unwrap();
    assert!(admin_store().await.revoke_token(&path, &id).await.unwrap());
    // Records are reloaded every second in the tests (every ten by default).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let answer = app.post_json(&request()).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(
        answer.body["error"]["message"],
        "the token is not valid: unknown, revoked or malformed"
    );
    assert_eq!(app.stub.request_count(), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = spawn_app().await;
    // Expiry is kept to the second: a 4 s token is good for at least 3 s.
    let short = create_token(&app.key_path, Role::Submit, "4s", None).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let letters = format!("{}/v1/cover-letters", app.base);
    let response = app
        .http
        .post(&letters)
        .bearer_auth(&short)
        .json(&request())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let response = app
        .http
        .post(&letters)
        .bearer_auth(&short)
        .json(&request())
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "unauthorized", "message": "the token has expired; ask an administrator for a new one"}})
    );
    app.stop().await;
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after_and_no_llm_call() {
    let app = spawn_app_with(Options {
        rate: Some(Rate {
            requests: 2,
            per_seconds: 60,
        }),
        ..Options::default()
    })
    .await;
    assert_eq!(app.post_json(&request()).await.status, 200);
    assert_eq!(app.post_json(&request()).await.status, 200);
    let third = app.post_json(&request()).await;
    assert_eq!(third.status, 429, "{}", third.body);
    let retry: u64 = third.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=31).contains(&retry), "Retry-After {retry}");
    assert_eq!(third.body["error"]["code"], "rate_limited");
    assert_eq!(
        third.body["error"]["message"],
        format!(
            "this token's rate limit (2/min) is used up; retry in {retry} s (the limit is \
             Letterbox's own, per token, not the LLM provider's)"
        )
    );
    assert_eq!(app.stub.request_count(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_stray_entry_under_the_tokens_path_does_not_stop_revocation() {
    let app = spawn_app().await;
    // Not a token record: the reloading must skip it, not give up on every record.
    let stray = format!("{}-tokens/admin/deadbeefdeadbeef", app.key_path);
    let data = std::collections::HashMap::from([("x", "1")]);
    vaultrs::kv2::set(&crate::helpers::vault_client(), "secret", &stray, &data)
        .await
        .unwrap();
    let id = tokens::token_id(&app.submit_token).unwrap().to_owned();
    let path = TokensPath::parse(&tokens_path(&app.key_path)).unwrap();
    assert!(admin_store().await.revoke_token(&path, &id).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(app.post_json(&request()).await.status, 401);
    let _ = vaultrs::kv2::delete_metadata(&crate::helpers::vault_client(), "secret", &stray).await;
    app.stop().await;
}

/// Runs the ingress binary with `env` only until it exits or `secs` pass; its exit code (None
/// while it still runs, then it is stopped) and its log.
fn run_producer(env: &[(&str, String)], secs: u64) -> (Option<i32>, String) {
    use std::process::{Command, Stdio};
    let mut command = Command::new(crate::helpers::binary("letterbox-producer"));
    command
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut code = None;
    for _ in 0..secs * 10 {
        if let Some(status) = child.try_wait().unwrap() {
            code = status.code();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    (code, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn tokens_are_required_unless_turned_off_and_off_is_only_allowed_on_loopback() {
    letterbox::install_crypto_provider();
    let (vault_addr, vault_token) = crate::helpers::vault();
    let queue = format!("letterbox.test.{}", uuid::Uuid::new_v4().simple());
    let port = crate::helpers::free_port();
    let base = vec![
        ("AMQP_URL", crate::helpers::amqp_url()),
        ("LETTERBOX_JOBS_QUEUE", queue.clone()),
    ];

    // By default the ingress checks tokens, so without Vault credentials it cannot start.
    let (code, log) = run_producer(
        &[
            base.clone(),
            vec![("LETTERBOX_HTTP_ADDR", format!("127.0.0.1:{port}"))],
        ]
        .concat(),
        30,
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("LETTERBOX_AUTH=tokens needs Vault: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID"),
        "{log}"
    );

    // Turning tokens off on an address other hosts can reach is refused.
    let (code, log) = run_producer(
        &[
            base.clone(),
            vec![
                ("LETTERBOX_AUTH", "none".to_owned()),
                ("LETTERBOX_HTTP_ADDR", format!("0.0.0.0:{port}")),
            ],
        ]
        .concat(),
        30,
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "LETTERBOX_AUTH=none is only allowed on a loopback address, not 0.0.0.0:{port}"
        )),
        "{log}"
    );

    // With Vault and nothing else said, a request without a token is refused.
    let tokens_path = format!(
        "secret/letterbox-tests/{}-tokens",
        uuid::Uuid::new_v4().simple()
    );
    let mut child = {
        use std::process::{Command, Stdio};
        let mut command = Command::new(crate::helpers::binary("letterbox-producer"));
        command
            .env_clear()
            .envs(base.iter().map(|(k, v)| (*k, v.as_str())))
            .env("LETTERBOX_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("VAULT_ADDR", &vault_addr)
            .env("VAULT_TOKEN", &vault_token)
            .env("LETTERBOX_TOKENS_PATH", &tokens_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command.spawn().unwrap()
    };
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let anonymous = http
        .post(format!("{url}/v1/cover-letters"))
        .json(&request())
        .send()
        .await;
    let metrics = http.get(format!("{url}/metrics")).send().await;
    let _ = child.kill();
    let _ = child.wait();
    crate::helpers::delete_topology(&queue).await;
    assert!(ready, "the ingress did not become ready");
    assert_eq!(
        status_and_code(anonymous.unwrap()).await,
        (401, "unauthorized".to_owned())
    );
    assert_eq!(
        status_and_code(metrics.unwrap()).await,
        (401, "unauthorized".to_owned())
    );
}
