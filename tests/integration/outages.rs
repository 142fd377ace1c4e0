//! A restart of any one part heals without an operator: the broker restarting under the ingress
//! and the workers, Vault going away under a worker, a worker starting before Vault.

use std::process::{Command, Stdio};
use std::time::Duration;

use letterbox_vault::{KvPath, SecretStore, VaultAuth, VaultError, VaultSettings};
use serde_json::json;

use crate::helpers::{Options, amqp_url, binary, free_port, job_description, spawn_app_with};
use crate::services::{PrivateBroker, PrivateVault, scratch_dir};

fn request() -> serde_json::Value {
    json!({
        "resume_text": "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL",
        "job_description": job_description(),
    })
}

async fn status(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url)
        .send()
        .await
        .map_or(0, |response| response.status().as_u16())
}

/// Polls `url` until it answers `want`, for up to `secs`; the last status seen.
async fn until_status(http: &reqwest::Client, url: &str, want: u16, secs: u64) -> u16 {
    let mut last = 0;
    for _ in 0..secs * 10 {
        last = status(http, url).await;
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test]
async fn ingress_and_workers_reconnect_after_the_broker_restarts() {
    let dir = scratch_dir("restart");
    let broker = PrivateBroker::start(&dir, None);
    broker.ready().await;
    let app = spawn_app_with(Options {
        amqp_url: Some(broker.amqp_url()),
        latency: Duration::from_millis(1_500),
        ..Options::default()
    })
    .await;
    let readyz = format!("{}/readyz", app.base);
    let worker_readyz = format!("http://{}/readyz", app.consumer_metrics[0]);
    assert_eq!(app.post_json(&request()).await.status, 200);
    assert_eq!(status(&app.http, &worker_readyz).await, 200);

    // A request waits for its letter while the broker goes away.
    let waiting = {
        let (http, url, token) = (
            app.http.clone(),
            format!("{}/v1/cover-letters", app.base),
            app.submit_token.clone(),
        );
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&request())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = broker.ctl(&["stop_app"]);
    assert!(stopped.status.success(), "{stopped:?}");
    // It is told its reply is lost, at once rather than at its deadline.
    let (code, body) = waiting.await.unwrap();
    assert_eq!(
        (code, &body["error"]["code"]),
        (503, &json!("reply_lost")),
        "{body}"
    );
    // Both sides notice, and a request is refused at once with a reason, not left hanging.
    assert_eq!(until_status(&app.http, &readyz, 503, 10).await, 503);
    assert_eq!(until_status(&app.http, &worker_readyz, 503, 10).await, 503);
    let answer = app.post_json(&request()).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "broker_unavailable");
    assert!(answer.retry_after.is_some());

    let started = broker.ctl(&["start_app"]);
    assert!(started.status.success(), "{started:?}");
    assert_eq!(until_status(&app.http, &readyz, 200, 60).await, 200);
    assert_eq!(until_status(&app.http, &worker_readyz, 200, 60).await, 200);
    let answer = app.post_json(&request()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body["cover_letter"].as_str().unwrap().len() > 200);
    // At least once to the LLM: the job in flight when the broker stopped is delivered again
    // after it is back and written a second time (its reply has nobody left to go to). Calls:
    // the first letter, that job twice, the last letter.
    let mut calls = 0;
    for _ in 0..100 {
        calls = app.stub.request_count();
        if calls == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(calls, 4);
    app.stop().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}

fn store_settings(vault: &PrivateVault, max_staleness: Duration) -> VaultSettings {
    VaultSettings {
        addr: vault.addr(),
        ca_cert: None,
        auth: VaultAuth::Token(secrecy::SecretString::from(vault.root_token.clone())),
        timeout: Duration::from_millis(500),
        cache_ttl: Duration::from_millis(200),
        max_staleness,
    }
}

#[tokio::test]
async fn during_a_vault_outage_the_key_read_last_serves_up_to_the_staleness_limit() {
    use secrecy::ExposeSecret;
    letterbox::install_crypto_provider();
    let dir = scratch_dir("vault-outage");
    let vault = PrivateVault::start(&dir, None);
    vault.ready().await;
    vault.put_llm_key("key-one", None).await;
    let path = KvPath::parse("secret/letterbox/llm", "api_key").unwrap();
    let tolerant = SecretStore::connect(store_settings(&vault, Duration::from_secs(60)))
        .await
        .unwrap();
    let strict = SecretStore::connect(store_settings(&vault, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(tolerant.read(&path).await.unwrap().version, 1);
    assert_eq!(strict.read(&path).await.unwrap().version, 1);

    vault.freeze();
    tokio::time::sleep(Duration::from_millis(300)).await; // past the cache's 200 ms
    for _ in 0..3 {
        let served = tolerant.read(&path).await.unwrap();
        assert_eq!(
            (served.version, served.value.expose_secret()),
            (1, "key-one")
        );
    }
    assert!(matches!(
        strict.read(&path).await,
        Err(VaultError::Unreachable(_))
    ));

    // Back, with a new version: read once the outage pause (5 s) is over.
    vault.thaw();
    vault.put_llm_key("key-two", None).await;
    let mut version = 0;
    for _ in 0..100 {
        version = tolerant.read(&path).await.unwrap().version;
        if version == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(version, 2);
    assert_eq!(strict.read(&path).await.unwrap().version, 2);
    drop(vault);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_worker_started_before_vault_reports_not_ready_then_takes_jobs_once_it_can() {
    // The ingress of a development setup (no tokens, no Vault) sends jobs unsealed; the worker
    // below runs without tokens too, so it takes them.
    let key = format!("late-key-{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(Options {
        open: true,
        stub_key: key.clone(),
        vault_key: key.clone(),
        ..Options::without_workers()
    })
    .await;
    let dir = scratch_dir("vault-late");
    let vault_port = free_port();
    let root_token = format!("late-root-{}", uuid::Uuid::new_v4().simple());
    let metrics_port = free_port();
    let mut worker = Command::new(binary("letterbox-consumer"))
        .env_clear()
        .env("AMQP_URL", amqp_url())
        .env("LETTERBOX_JOBS_QUEUE", &app.queue)
        .env("LETTERBOX_AUTH", "none")
        .env("VAULT_ADDR", format!("http://127.0.0.1:{vault_port}"))
        .env("VAULT_TOKEN", &root_token)
        .env("LETTERBOX_VAULT_TIMEOUT_MS", "500")
        .env("LLM_BASE_URL", &app.stub.base_url)
        .env("LLM_MODEL", "letterbox-stub-1")
        .env(
            "LETTERBOX_METRICS_ADDR",
            format!("127.0.0.1:{metrics_port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let worker_url = format!("http://127.0.0.1:{metrics_port}");
    assert_eq!(
        until_status(&app.http, &format!("{worker_url}/healthz"), 200, 30).await,
        200
    );
    let not_ready = app
        .http
        .get(format!("{worker_url}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status().as_u16(), 503);
    let body: serde_json::Value = not_ready.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "the LLM key cannot be read from Vault yet"
    );
    assert!(worker.try_wait().unwrap().is_none(), "the worker exited");

    // Vault comes up (with the key the stub accepts): the worker becomes ready and writes.
    let vault = PrivateVault::start_at(&dir, None, vault_port, &root_token);
    vault.ready().await;
    vault.put_llm_key(&key, None).await;
    assert_eq!(
        until_status(&app.http, &format!("{worker_url}/readyz"), 200, 30).await,
        200
    );
    let answer = app.post_json(&request()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(worker.id().to_string())
        .status();
    let exit = worker.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    app.stop().await;
    drop(vault);
    let _ = std::fs::remove_dir_all(dir);
}
